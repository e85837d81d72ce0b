//! The Kafka bus (`bus.kind = "kafka"`), through rdkafka (librdkafka).
//!
//! - **Publish**: an accepted payload's rows are split by campaign and
//!   published to `bus.topic` keyed `tenant/campaign`, so one campaign's rows
//!   stay ordered on one partition. The producer is idempotent with
//!   `acks=all`; [`KafkaBus::publish`] returns only when the broker has
//!   acknowledged every message, which is what lets the API answer `202`. A
//!   broker that does not answer within `bus.timeout_ms` fails the publish:
//!   the API answers `503` with `Retry-After`.
//! - **Consume**: every adpipe process joins the consumer group `bus.group`,
//!   applies what it receives to the store, and commits offsets only after
//!   the store has the rows (at-least-once delivery; the store's replacing
//!   semantics make totals exact). A store that fails pauses consumption:
//!   the same batch is retried, nothing is committed meanwhile.
//! - **Consistency**: a query first reads the topic's high watermarks (what
//!   has been acknowledged so far) and waits until the group's committed
//!   offsets reach them, whichever process consumed the rows.
//! - **Dead letters**: payloads that cannot be processed also go to
//!   `<topic>.dead-letters` with the reason in headers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::config::BusConfig;
use crate::row::RowEnvelope;

/// The Kafka bus failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("kafka: {0}")]
    Other(String),
}

/// Where every partition of the rows topic stood at one moment: the high
/// watermark (next offset to be written) of each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence(pub Vec<i64>);

impl Fence {
    /// A cache-key form.
    pub fn key(&self) -> String {
        self.0
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// Logs every partition assignment change of the aggregation consumer.
pub struct RebalanceLog;

impl rdkafka::ClientContext for RebalanceLog {}

impl rdkafka::consumer::ConsumerContext for RebalanceLog {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &rdkafka::consumer::Rebalance<'_>) {
        match rebalance {
            rdkafka::consumer::Rebalance::Assign(list) => {
                let partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?partitions, "kafka partitions assigned");
            }
            rdkafka::consumer::Rebalance::Revoke(list) => {
                let partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?partitions, "kafka partitions revoked");
            }
            rdkafka::consumer::Rebalance::Error(e) => tracing::warn!("kafka rebalance failed: {e}"),
        }
    }
}

/// The aggregation consumer's type.
pub type RowConsumer = StreamConsumer<RebalanceLog>;

/// Handle to the Kafka bus; cheap to clone.
#[derive(Clone)]
pub struct KafkaBus {
    /// Replaced when librdkafka declares it fatally failed (an idempotent
    /// producer whose messages timed out while the brokers were away).
    producer: Arc<std::sync::RwLock<FutureProducer>>,
    config: BusConfig,
    /// When the producer was last replaced (at most once per timeout).
    renewed: Arc<std::sync::Mutex<Instant>>,
    /// Replaced producers, kept until they hold no message (dropping a
    /// librdkafka handle with requests in flight is not safe).
    retired: Arc<std::sync::Mutex<Vec<FutureProducer>>>,
    /// One admin client for (re)creating topics.
    admin: Arc<AdminClient<DefaultClientContext>>,
    /// Not subscribed: reads watermarks and the group's committed offsets.
    observer: Arc<BaseConsumer>,
    topic: String,
    dead_letter_topic: String,
    group: String,
    partitions: i32,
    timeout: Duration,
}

fn client_config(config: &BusConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set(
        "bootstrap.servers",
        config.brokers.as_deref().unwrap_or("127.0.0.1:9092"),
    );
    // TLS and SASL settings pass through unchanged (e.g. security.protocol=ssl).
    for (k, v) in &config.client {
        c.set(k, v);
    }
    c
}

impl KafkaBus {
    /// Connect, create the topics if missing, and check the broker answers.
    pub async fn open(config: &BusConfig) -> Result<KafkaBus, KafkaError> {
        let timeout = Duration::from_millis(config.timeout_ms);
        let producer = Self::producer(config)?;
        let observer: BaseConsumer = client_config(config)
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .create()?;
        let bus = KafkaBus {
            producer: Arc::new(std::sync::RwLock::new(producer)),
            config: config.clone(),
            renewed: Arc::new(std::sync::Mutex::new(Instant::now())),
            retired: Arc::new(std::sync::Mutex::new(Vec::new())),
            admin: Arc::new(client_config(config).create()?),
            observer: Arc::new(observer),
            topic: config.topic.clone(),
            dead_letter_topic: format!("{}.dead-letters", config.topic),
            group: config.group.clone(),
            partitions: config.partitions,
            timeout,
        };
        bus.create_topics().await?;
        Ok(bus)
    }

    fn producer(config: &BusConfig) -> Result<FutureProducer, KafkaError> {
        Ok(client_config(config)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("message.timeout.ms", config.timeout_ms.to_string())
            .create()?)
    }

    fn current_producer(&self) -> FutureProducer {
        match self.producer.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// After a failed publish: replace a fatally failed producer, and
    /// create the topics again if the cluster lost them.
    async fn recover(&self, error: &KafkaError) {
        use rdkafka::producer::Producer as _;
        // A fatally failed producer is replaced; so is one whose messages
        // timed out (its idempotence state may not match a restarted
        // cluster's), at most once per publish timeout.
        let fatal = self.current_producer().client().fatal_error();
        let timed_out = matches!(
            error,
            KafkaError::Client(rdkafka::error::KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut
            ))
        );
        // After an outage the brokers may fence the old producer id.
        let fenced = matches!(
            error,
            KafkaError::Client(rdkafka::error::KafkaError::MessageProduction(
                RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::UnknownProducerId
                    | RDKafkaErrorCode::OutOfOrderSequenceNumber
            ))
        );
        let due = self
            .renewed
            .lock()
            .map(|at| at.elapsed() >= self.timeout)
            .unwrap_or(true);
        // Renew only with the brokers reachable again: replacing a producer
        // while its connections are being refused crashed librdkafka here.
        let reachable =
            (fatal.is_some() || ((timed_out || fenced) && due)) && self.ping().await.is_ok();
        if reachable {
            if let Some((code, reason)) = &fatal {
                tracing::warn!(?code, %reason, "the Kafka producer failed fatally; starting a new one");
            }
            match Self::producer(&self.config) {
                Ok(fresh) => {
                    if let Ok(mut slot) = self.producer.write() {
                        let old = std::mem::replace(&mut *slot, fresh);
                        if let Ok(mut retired) = self.retired.lock() {
                            retired.retain(|p| p.in_flight_count() > 0);
                            retired.push(old);
                        }
                    }
                    if let Ok(mut at) = self.renewed.lock() {
                        *at = Instant::now();
                    }
                }
                Err(e) => tracing::error!("starting a new Kafka producer failed: {e}"),
            }
        }
        // A restarted or replaced cluster may have lost the topics: messages
        // to a missing topic time out rather than fail. Re-create them in the
        // background (existing topics are left alone), keeping the 503 fast.
        let bus = self.clone();
        tokio::spawn(async move {
            if let Err(e) = bus.create_topics().await {
                tracing::debug!("re-creating the topics failed: {e}");
            }
        });
    }

    async fn create_topics(&self) -> Result<(), KafkaError> {
        let admin = &self.admin;
        let topics = [
            NewTopic::new(&self.topic, self.partitions, TopicReplication::Fixed(1)),
            NewTopic::new(&self.dead_letter_topic, 1, TopicReplication::Fixed(1)),
        ];
        let results = admin
            .create_topics(
                &topics,
                &AdminOptions::new().operation_timeout(Some(self.timeout)),
            )
            .await?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(KafkaError::Other(format!("creating topic {topic}: {code}")))
                }
            }
        }
        Ok(())
    }

    /// Publish an envelope's rows, one message per campaign, and wait for
    /// the broker's acknowledgement of all of them.
    pub async fn publish(&self, envelope: &RowEnvelope) -> Result<(), KafkaError> {
        let result = self.publish_once(envelope).await;
        if let Err(e) = &result {
            self.recover(e).await;
        }
        result
    }

    async fn publish_once(&self, envelope: &RowEnvelope) -> Result<(), KafkaError> {
        let producer = self.current_producer();
        let mut by_campaign: std::collections::BTreeMap<&str, Vec<&crate::row::Row>> =
            Default::default();
        for row in &envelope.rows {
            by_campaign
                .entry(row.campaign_id.as_deref().unwrap_or(""))
                .or_default()
                .push(row);
        }
        // Enqueue everything first (librdkafka batches), then wait for every ack.
        let mut deliveries = Vec::with_capacity(by_campaign.len());
        for (campaign, rows) in by_campaign {
            let part = RowEnvelope {
                tenant: envelope.tenant.clone(),
                pipeline: envelope.pipeline.clone(),
                rows: rows.into_iter().cloned().collect(),
            };
            let payload =
                serde_json::to_vec(&part).map_err(|e| KafkaError::Other(e.to_string()))?;
            let key = format!("{}/{campaign}", envelope.tenant);
            let record = FutureRecord::to(&self.topic).key(&key).payload(&payload);
            let delivery = producer
                .send_result(record)
                .map_err(|(e, _)| KafkaError::Client(e))?;
            deliveries.push(delivery);
        }
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(KafkaError::Client(e)),
                Err(_) => return Err(KafkaError::Other("the producer went away".into())),
            }
        }
        Ok(())
    }

    /// Keep a payload that could not be processed on the dead-letter topic,
    /// with the reason in headers.
    pub async fn dead_letter(
        &self,
        tenant: &str,
        pipeline: &str,
        code: &str,
        message: &str,
        payload: &[u8],
    ) -> Result<(), KafkaError> {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "tenant",
                value: Some(tenant),
            })
            .insert(Header {
                key: "pipeline",
                value: Some(pipeline),
            })
            .insert(Header {
                key: "code",
                value: Some(code),
            })
            .insert(Header {
                key: "reason",
                value: Some(message),
            });
        self.current_producer()
            .send(
                FutureRecord::to(&self.dead_letter_topic)
                    .key(pipeline)
                    .payload(payload)
                    .headers(headers),
                self.timeout,
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| KafkaError::Client(e))
    }

    /// The rows topic's high watermarks now.
    pub async fn fence(&self) -> Result<Fence, KafkaError> {
        let (observer, topic, partitions, timeout) = (
            self.observer.clone(),
            self.topic.clone(),
            self.partitions,
            self.timeout,
        );
        tokio::task::spawn_blocking(move || {
            (0..partitions)
                .map(|p| {
                    observer
                        .fetch_watermarks(&topic, p, timeout)
                        .map(|(_, high)| high)
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Fence)
                .map_err(KafkaError::from)
        })
        .await
        .map_err(|e| KafkaError::Other(e.to_string()))?
    }

    /// The group's committed offsets of the rows topic (-1 where none).
    pub async fn committed(&self) -> Result<Vec<i64>, KafkaError> {
        let (observer, topic, partitions, timeout) = (
            self.observer.clone(),
            self.topic.clone(),
            self.partitions,
            self.timeout,
        );
        tokio::task::spawn_blocking(move || {
            let mut list = TopicPartitionList::new();
            for p in 0..partitions {
                list.add_partition(&topic, p);
            }
            let committed = observer.committed_offsets(list, timeout)?;
            Ok((0..partitions)
                .map(
                    |p| match committed.find_partition(&topic, p).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => o,
                        _ => -1,
                    },
                )
                .collect())
        })
        .await
        .map_err(|e| KafkaError::Other(e.to_string()))?
    }

    /// Wait until the group has committed everything before `fence`; false on timeout.
    pub async fn wait_committed(&self, fence: &Fence, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(committed) = self.committed().await {
                let reached = fence
                    .0
                    .iter()
                    .zip(&committed)
                    .all(|(&high, &done)| high <= 0 || done >= high);
                if reached {
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Records acknowledged but not yet committed by the group.
    pub async fn lag(&self) -> Result<i64, KafkaError> {
        let fence = self.fence().await?;
        let committed = self.committed().await?;
        Ok(fence
            .0
            .iter()
            .zip(&committed)
            .map(|(&high, &done)| (high - done.max(0)).max(0))
            .sum())
    }

    /// The broker answers metadata requests.
    pub async fn ping(&self) -> Result<(), KafkaError> {
        let (observer, topic, timeout) = (
            self.observer.clone(),
            self.topic.clone(),
            self.timeout.min(Duration::from_secs(2)),
        );
        tokio::task::spawn_blocking(move || {
            observer
                .fetch_metadata(Some(&topic), timeout)
                .map(|_| ())
                .map_err(KafkaError::from)
        })
        .await
        .map_err(|e| KafkaError::Other(e.to_string()))?
    }

    /// A group member that consumes the rows topic.
    pub fn consumer(&self, config: &BusConfig) -> Result<RowConsumer, KafkaError> {
        let consumer: RowConsumer = client_config(config)
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .create_with_context(RebalanceLog)?;
        consumer.subscribe(&[&self.topic])?;
        Ok(consumer)
    }
}

/// How long a partition may hold unconsumed records, unassigned to this
/// process and with its committed offset standing still, before this
/// process asks the group to rebalance.
const ORPHAN_AFTER: Duration = Duration::from_secs(12);

/// Watchdog: a partition whose owner died must be taken over. Kafka's
/// coordinator reassigns it after the owner's session times out; some
/// Kafka-protocol brokers (tansu) keep the dead member's assignment in the
/// next generation. When a partition has records waiting, no member here
/// owns it, and its committed offset has not moved for [`ORPHAN_AFTER`],
/// rejoin the group so the assignment is computed again.
async fn watch_orphans(consumer: Arc<RowConsumer>, bus: KafkaBus, topic: String) {
    let mut stalled_since: std::collections::HashMap<i32, (i64, Instant)> = Default::default();
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (Ok(fence), Ok(committed)) = (bus.fence().await, bus.committed().await) else {
            continue;
        };
        let owned: Vec<i32> = match consumer.assignment() {
            Ok(list) => list.elements().iter().map(|e| e.partition()).collect(),
            Err(_) => continue,
        };
        let now = Instant::now();
        let mut orphaned = vec![];
        for (p, (&high, &done)) in fence.0.iter().zip(&committed).enumerate() {
            let p = p as i32;
            if high <= done.max(0) || owned.contains(&p) {
                stalled_since.remove(&p);
                continue;
            }
            let entry = stalled_since.entry(p).or_insert((done, now));
            if entry.0 != done {
                *entry = (done, now);
            } else if now.duration_since(entry.1) >= ORPHAN_AFTER {
                orphaned.push(p);
            }
        }
        if !orphaned.is_empty() {
            tracing::warn!(
                ?orphaned,
                "partitions with waiting records have no live owner; rejoining the group"
            );
            consumer.unsubscribe();
            if let Err(e) = consumer.subscribe(&[&topic]) {
                tracing::error!("rejoining the consumer group failed: {e}");
            }
            stalled_since.clear();
        }
    }
}

/// The aggregation consumer of Kafka mode: receive, apply to the store,
/// then commit. Never commits what the store does not have.
pub async fn consume(
    consumer: Arc<RowConsumer>,
    store: crate::store::Store,
    topic: String,
    bus: KafkaBus,
) {
    tokio::spawn(watch_orphans(consumer.clone(), bus, topic.clone()));
    const BATCH: usize = 256;
    loop {
        let mut batch: Vec<(i32, i64, RowEnvelope)> = Vec::new();
        let first = match consumer.recv().await {
            Ok(m) => m.detach(),
            Err(e) => {
                tracing::warn!("kafka receive failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut messages = vec![first];
        // Gather what is already there, briefly.
        let gather_until = Instant::now() + Duration::from_millis(20);
        while messages.len() < BATCH {
            let left = gather_until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, consumer.recv()).await {
                Ok(Ok(m)) => messages.push(m.detach()),
                _ => break,
            }
        }
        for m in &messages {
            match m
                .payload()
                .map(serde_json::from_slice::<RowEnvelope>)
                .transpose()
            {
                Ok(Some(envelope)) => batch.push((m.partition(), m.offset(), envelope)),
                Ok(None) => {}
                Err(e) => tracing::error!(
                    partition = m.partition(),
                    offset = m.offset(),
                    "undecodable record skipped: {e}"
                ),
            }
        }
        let records: Vec<(u64, RowEnvelope)> = batch
            .iter()
            .map(|(_, _, envelope)| (0, envelope.clone()))
            .collect();
        let mut delay = Duration::from_millis(100);
        while let Err(error) = store.apply(&records).await {
            tracing::error!(
                "applying rows to the store failed; consumption paused, retrying: {error}"
            );
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        let mut offsets = TopicPartitionList::new();
        let mut next: std::collections::BTreeMap<i32, i64> = Default::default();
        for m in &messages {
            let entry = next.entry(m.partition()).or_insert(m.offset() + 1);
            *entry = (*entry).max(m.offset() + 1);
        }
        for (partition, offset) in next {
            if let Err(e) = offsets.add_partition_offset(&topic, partition, Offset::Offset(offset))
            {
                tracing::error!("building the commit failed: {e}");
            }
        }
        // Asynchronous: a commit stuck in a rebalance must not stall
        // consumption (the rows are stored; a redelivery is harmless).
        if let Err(e) = consumer.commit(&offsets, CommitMode::Async) {
            // A rebalance took the partitions: the new owner re-applies, harmlessly.
            tracing::warn!(
                "committing offsets failed (the rows are stored; a redelivery is harmless): {e}"
            );
        }
    }
}
