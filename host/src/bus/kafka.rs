//! The Kafka bus (`bus.kind = "kafka"`), through rdkafka (librdkafka).
//!
//! - **Publish**: an accepted payload's rows are split by campaign and
//!   published to `bus.topic` keyed `tenant/campaign`, so one campaign's rows
//!   stay ordered on one partition. Each message carries the publishing
//!   span's W3C `traceparent` header when traces are exported. The producer is idempotent with
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
//!   `<topic>.dead-letters`, sealed (`crate::seal`: the value is the blob,
//!   associated data `adpipe/dead-letter/<tenant>`), with the sealing key's id
//!   in the `key_id` header and the reason (`tenant`, `pipeline`, `code`,
//!   `reason`) in clear headers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers as _, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::{BusBackend, BusError, BusReader, CatchUp, DeadLetter, Record};
use crate::config::BusConfig;
use crate::row::RowEnvelope;
use crate::seal::{Context, SealError, Sealer};
use crate::store::Store;
use crate::telemetry::trace::{TraceParent, TRACEPARENT};
use crate::telemetry::BusConsumerMetrics;

/// The Kafka bus failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("a Kafka client task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("creating topic {topic}: {code}")]
    CreateTopic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("the Kafka producer went away before acknowledging")]
    ProducerGone,
    #[error("sealing a dead letter")]
    Seal(#[from] SealError),
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

    /// Whether `committed` (per partition, -1 where none) is at or past the
    /// fence on every partition that holds records.
    pub fn reached(&self, committed: &[i64]) -> bool {
        self.0
            .iter()
            .zip(committed)
            .all(|(&high, &done)| high <= 0 || done >= high)
    }
}

/// Every partition's high watermark in one `ListOffsets` request per broker
/// (the "latest" timestamp, -1, for each partition), where asking partition
/// by partition costs a round trip each; `None` when the broker does not
/// answer that way, and the caller asks per partition.
fn latest_offsets(
    observer: &BaseConsumer,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Option<Fence> {
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, Offset::End).ok()?;
    }
    let answer = observer.offsets_for_times(list, timeout).ok()?;
    (0..partitions)
        .map(|p| match answer.find_partition(topic, p)?.offset() {
            Offset::Offset(high) if high >= 0 => Some(high),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .map(Fence)
}

/// Logs every partition assignment change of the aggregation consumer and
/// counts them, so the consumer knows where each partition restarted.
#[derive(Default)]
pub struct RebalanceLog {
    generation: std::sync::atomic::AtomicU64,
}

impl RebalanceLog {
    /// How many assignment changes this member has seen.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl rdkafka::ClientContext for RebalanceLog {}

impl rdkafka::consumer::ConsumerContext for RebalanceLog {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &rdkafka::consumer::Rebalance<'_>) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
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
    /// Set when a publish failed: the producer is replaced before the next.
    suspect: Arc<std::sync::atomic::AtomicBool>,
    /// One replacement at a time.
    renewing: Arc<tokio::sync::Mutex<()>>,
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
    /// Seals dead letters before they leave for the brokers.
    sealer: Sealer,
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
    pub async fn open(config: &BusConfig, sealer: Sealer) -> Result<KafkaBus, KafkaError> {
        let timeout = Duration::from_millis(config.timeout_ms);
        let producer = Self::producer(config)?;
        let observer: BaseConsumer = client_config(config)
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .create()?;
        let bus = KafkaBus {
            producer: Arc::new(std::sync::RwLock::new(producer)),
            config: config.clone(),
            suspect: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            renewing: Arc::new(tokio::sync::Mutex::new(())),
            retired: Arc::new(std::sync::Mutex::new(Vec::new())),
            admin: Arc::new(client_config(config).create()?),
            observer: Arc::new(observer),
            topic: config.topic.clone(),
            dead_letter_topic: format!("{}.dead-letters", config.topic),
            group: config.group.clone(),
            partitions: config.partitions,
            timeout,
            sealer,
        };
        bus.create_topics().await?;
        Ok(bus)
    }

    fn producer(config: &BusConfig) -> Result<FutureProducer, KafkaError> {
        Ok(client_config(config)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            // Bounded record batches: a member that resumes inside one never
            // has to look back further than this (see `Continuity`).
            .set("batch.num.messages", PRODUCER_BATCH_MESSAGES.to_string())
            .set("message.timeout.ms", config.timeout_ms.to_string())
            .create()?)
    }

    fn current_producer(&self) -> FutureProducer {
        match self.producer.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// After a failed publish: mark the producer for replacement, and create
    /// the topics again if the cluster lost them.
    async fn recover(&self, error: &KafkaError) {
        use rdkafka::producer::Producer as _;
        // A producer whose messages failed (timed out, or refused by brokers
        // that came back) is not used again: its idempotence state (producer
        // id, sequence numbers) may no longer match the brokers'. A fenced id
        // fails every later message; tansu 0.6.0's SQLite storage even stops
        // serving anyone once such a producer sends its next batch after a
        // timeout. A fatally failed one is replaced too.
        let fatal = self.current_producer().client().fatal_error();
        let produce_failed = matches!(
            error,
            KafkaError::Client(rdkafka::error::KafkaError::MessageProduction(_))
        );
        if fatal.is_some() || produce_failed {
            if let Some((code, reason)) = &fatal {
                tracing::warn!(?code, %reason, "the Kafka producer failed fatally");
            }
            self.suspect
                .store(true, std::sync::atomic::Ordering::Release);
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

    /// Before publishing: replace a producer marked by [`Self::recover`], once
    /// the brokers answer again (replacing a producer while its connections
    /// are being refused crashed librdkafka here). Until they answer, publish
    /// fails at once.
    async fn renew_if_suspect(&self) -> Result<(), KafkaError> {
        use std::sync::atomic::Ordering;
        if !self.suspect.load(Ordering::Acquire) {
            return Ok(());
        }
        let _one_at_a_time = self.renewing.lock().await;
        if !self.suspect.load(Ordering::Acquire) {
            return Ok(());
        }
        self.ping_brokers().await?;
        let fresh = Self::producer(&self.config)?;
        tracing::warn!("publishing failed earlier; starting a new Kafka producer");
        if let Ok(mut slot) = self.producer.write() {
            let old = std::mem::replace(&mut *slot, fresh);
            if let Ok(mut retired) = self.retired.lock() {
                use rdkafka::producer::Producer as _;
                retired.retain(|p| p.in_flight_count() > 0);
                retired.push(old);
            }
        }
        self.suspect.store(false, Ordering::Release);
        Ok(())
    }

    async fn create_topics(&self) -> Result<(), KafkaError> {
        let admin = &self.admin;
        let (observer, timeout) = (self.observer.clone(), self.timeout);
        let brokers = tokio::task::spawn_blocking(move || {
            observer
                .fetch_metadata(None, timeout)
                .map(|m| m.brokers().len())
        })
        .await??;
        let replicas = Replicas::for_cluster(self.config.replication_factor, brokers);
        if replicas.factor < self.config.replication_factor {
            tracing::warn!(
                wanted = self.config.replication_factor,
                brokers,
                "bus.replication_factor is more than the cluster's brokers; topics adpipe creates get {} replica(s)",
                replicas.factor
            );
        }
        let min_insync = replicas.min_insync.to_string();
        let topics = [
            NewTopic::new(
                &self.topic,
                self.partitions,
                TopicReplication::Fixed(replicas.factor),
            )
            .set("min.insync.replicas", &min_insync),
            NewTopic::new(
                &self.dead_letter_topic,
                1,
                TopicReplication::Fixed(replicas.factor),
            )
            .set("min.insync.replicas", &min_insync),
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
                Err((topic, code)) => return Err(KafkaError::CreateTopic { topic, code }),
            }
        }
        Ok(())
    }

    /// Publish an envelope's rows, one message per partition their campaigns
    /// map to ([`partition_of`]), and wait for the broker's acknowledgement
    /// of all of them.
    async fn publish_rows(
        &self,
        envelope: &RowEnvelope,
        trace: Option<&TraceParent>,
    ) -> Result<(), KafkaError> {
        self.renew_if_suspect().await?;
        let result = self.publish_once(envelope, trace).await;
        if let Err(e) = &result {
            self.recover(e).await;
        }
        result
    }

    async fn publish_once(
        &self,
        envelope: &RowEnvelope,
        trace: Option<&TraceParent>,
    ) -> Result<(), KafkaError> {
        let producer = self.current_producer();
        let records = partition_records(envelope, self.partitions);
        // Enqueue everything first (librdkafka batches), then wait for every ack.
        let mut deliveries = Vec::with_capacity(records.len());
        for (partition, payload) in &records {
            let mut record = FutureRecord::to(&self.topic)
                .partition(*partition)
                .key(envelope.tenant.as_str())
                .payload(payload);
            if let Some(trace) = trace {
                record = record.headers(OwnedHeaders::new().insert(Header {
                    key: TRACEPARENT,
                    value: Some(trace.as_str()),
                }));
            }
            let delivery = producer
                .send_result(record)
                .map_err(|(e, _)| KafkaError::Client(e))?;
            deliveries.push(delivery);
        }
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(KafkaError::Client(e)),
                Err(_) => return Err(KafkaError::ProducerGone),
            }
        }
        Ok(())
    }

    /// Keep a payload that could not be processed on the dead-letter topic,
    /// sealed, with the key id and the reason in headers.
    async fn publish_dead_letter(&self, letter: DeadLetter<'_>) -> Result<(), KafkaError> {
        let DeadLetter {
            tenant,
            pipeline,
            code,
            message,
            payload,
        } = letter;
        let sealed = self.sealer.seal(payload, Context::DeadLetter { tenant })?;
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
            })
            .insert(Header {
                key: "key_id",
                value: Some(&sealed.key_id),
            });
        self.renew_if_suspect().await?;
        let result = self
            .current_producer()
            .send(
                FutureRecord::to(&self.dead_letter_topic)
                    .key(pipeline)
                    .payload(&sealed.blob)
                    .headers(headers),
                self.timeout,
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| KafkaError::Client(e));
        if let Err(e) = &result {
            self.recover(e).await;
        }
        result
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
            if let Some(fence) = latest_offsets(&observer, &topic, partitions, timeout) {
                return Ok(fence);
            }
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
        .await?
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
        .await?
    }

    /// Wait until the group has committed everything before `fence`; false on timeout.
    pub async fn wait_committed(&self, fence: &Fence, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(committed) = self.committed().await {
                if fence.reached(&committed) {
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Reads the fence now and waits until the group has committed through
    /// it. The fence and the first read of the committed offsets are two
    /// requests sent at once, not one after the other: a committed offset
    /// read a moment before the fence only ever lags it (offsets move
    /// forward), so when it already reaches the fence everything
    /// acknowledged before the call was applied; otherwise the wait goes on.
    async fn reach_fence(&self, timeout: Duration) -> Result<(bool, Fence), KafkaError> {
        let (fence, committed) = tokio::join!(self.fence(), self.committed());
        let fence = fence?;
        if committed.is_ok_and(|committed| fence.reached(&committed)) {
            return Ok((true, fence));
        }
        Ok((self.wait_committed(&fence, timeout).await, fence))
    }

    /// Records acknowledged but not yet committed by the group.
    async fn lag_records(&self) -> Result<i64, KafkaError> {
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
    async fn ping_brokers(&self) -> Result<(), KafkaError> {
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
        .await?
    }

    /// A group member that consumes the rows topic.
    fn consumer(&self) -> Result<RowConsumer, KafkaError> {
        let mut config = client_config(&self.config);
        config
            .set("group.id", &self.group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000");
        if !self.config.client.contains_key(FETCH_WAIT_MAX) {
            config.set(FETCH_WAIT_MAX, FETCH_WAIT_MAX_MS.to_string());
        }
        let consumer: RowConsumer = config.create_with_context(RebalanceLog::default())?;
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

/// Replication of the topics adpipe creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replicas {
    pub factor: i32,
    /// `min.insync.replicas`: one less than the factor (at least 1), so a
    /// write acknowledged with `acks=all` survives one broker's loss and one
    /// broker may be down without stopping writes.
    pub min_insync: i32,
}

impl Replicas {
    /// `wanted` replicas, at most one per broker the cluster has.
    pub fn for_cluster(wanted: i32, brokers: usize) -> Replicas {
        let brokers = i32::try_from(brokers).unwrap_or(i32::MAX).max(1);
        let factor = wanted.clamp(1, brokers);
        Replicas {
            factor,
            min_insync: (factor - 1).max(1),
        }
    }
}

/// Records per producer batch (librdkafka `batch.num.messages`): also the
/// first step back when a partition must be rewound (see [`Continuity`]).
pub const PRODUCER_BATCH_MESSAGES: i64 = 64;

/// librdkafka's setting for how long a fetch may wait at the broker for
/// records; `[bus.client]` may set it.
const FETCH_WAIT_MAX: &str = "fetch.wait.max.ms";

/// The consumer's fetch wait, instead of librdkafka's 500 ms. With the
/// default, the consumer sat idle between tansu 0.6.0's fetch answers
/// through a backlog (measured: `next()` waited 150–190 ms per 30 k rows
/// while neither the store nor adpipe was busy; Kafka answers as soon as
/// `fetch.min.bytes` are there): `scripts/bench-scale --distributed`
/// applied 1 M rows in 9.9 s with 500 ms and in 7.5 s with 100 ms, about as
/// fast as with 25 or 5 ms. An idle consumer asks each broker about 10
/// times a second.
pub const FETCH_WAIT_MAX_MS: u32 = 100;

/// Largest record the publisher writes: a partition's share of a payload
/// is split into records of at most this many bytes (librdkafka's and
/// Kafka's default `message.max.bytes` is 1,000,000).
pub const RECORD_MAX_BYTES: usize = 512 * 1024;

/// The partition of `campaign`'s rows: the one librdkafka's default
/// partitioner (`consistent_random`) picks for the key
/// `<tenant>/<campaign>`, CRC-32 of the key modulo the partitions, so a
/// campaign's rows stay on the partition they were always written to.
pub fn partition_of(tenant: &str, campaign: &str, partitions: i32) -> i32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(tenant.as_bytes());
    crc.update(b"/");
    crc.update(campaign.as_bytes());
    let partitions = u32::try_from(partitions).unwrap_or(1).max(1);
    // The remainder is below `partitions`, itself an `i32`.
    (crc.finalize() % partitions) as i32
}

/// The records `envelope` is published as, with their partitions: per
/// partition ([`partition_of`] each row's campaign) its rows in the order
/// the envelope holds them, in records of at most [`RECORD_MAX_BYTES`].
pub fn partition_records(envelope: &RowEnvelope, partitions: i32) -> Vec<(i32, Vec<u8>)> {
    rows_by_partition(envelope, partitions)
        .into_iter()
        .flat_map(|(partition, rows)| {
            super::record::encode_chunked(
                &envelope.tenant,
                &envelope.pipeline,
                &rows,
                RECORD_MAX_BYTES,
            )
            .into_iter()
            .map(move |record| (partition, record))
        })
        .collect()
}

/// `envelope`'s rows by partition ([`partition_of`] their campaign), each
/// partition's in the order the envelope holds them.
fn rows_by_partition(
    envelope: &RowEnvelope,
    partitions: i32,
) -> std::collections::BTreeMap<i32, Vec<&crate::row::Row>> {
    let mut by_partition: std::collections::BTreeMap<i32, Vec<&crate::row::Row>> =
        Default::default();
    let mut last: Option<(&str, i32)> = None;
    for row in &envelope.rows {
        let campaign = row.campaign_id.as_deref().unwrap_or("");
        let partition = match last {
            Some((c, p)) if c == campaign => p,
            _ => partition_of(&envelope.tenant, campaign, partitions),
        };
        last = Some((campaign, partition));
        by_partition.entry(partition).or_default().push(row);
    }
    by_partition
}

/// What the consumer does with one received record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The next record of its partition: apply it (and commit past it).
    Apply,
    /// Already applied (a record before the partition's position, read again
    /// after a rewind): neither apply nor commit it.
    Skip,
    /// Records before this one were never delivered: seek the partition back
    /// to `to`, and drop what else of it this batch holds.
    Rewind { to: i64 },
}

/// Keeps every partition's records in order with none missing.
///
/// On this topic (no compaction, no transactions) a Kafka broker never skips
/// an offset, so a record that arrives past the partition's expected offset
/// means the broker skipped records. tansu 0.6.0's memory storage does: a
/// fetch that starts inside a record batch is answered from the *next* batch,
/// so a member that resumes from a committed offset inside a producer batch
/// (a host died mid-stream) would never see the rest of that batch (issue 17).
/// The partition is then rewound and read again — re-applying is harmless,
/// since snapshots replace and deltas are kept once per dedup key — first by
/// [`PRODUCER_BATCH_MESSAGES`] records (producer batches are at most that
/// long), then twice as far each time, until the expected record arrives or
/// the start of the partition is reached; records the broker no longer has
/// at all are reported as skipped.
#[derive(Debug, Default)]
pub struct Continuity {
    /// The next offset to apply, per partition.
    next: std::collections::HashMap<i32, i64>,
    /// Where an unfinished rewind last sought to, per partition.
    rewound_to: std::collections::HashMap<i32, i64>,
}

impl Continuity {
    /// A new assignment: each partition resumes from `start` (the greater of
    /// the group's committed offset and what this member applied itself).
    pub fn restart(&mut self, starts: impl IntoIterator<Item = (i32, i64)>) {
        self.rewound_to.clear();
        for (partition, start) in starts {
            let next = self.next.entry(partition).or_insert(start);
            *next = (*next).max(start);
        }
    }

    /// Judge one record; `low` gives the partition's first retained offset
    /// (asked only when records are missing). The second value counts
    /// records given up as missing from the broker.
    pub fn observe(
        &mut self,
        partition: i32,
        offset: i64,
        low: impl FnOnce() -> i64,
    ) -> (Verdict, i64) {
        let Some(&expected) = self.next.get(&partition) else {
            self.next.insert(partition, offset + 1);
            return (Verdict::Apply, 0);
        };
        if offset < expected {
            return (Verdict::Skip, 0);
        }
        if offset == expected {
            self.next.insert(partition, offset + 1);
            self.rewound_to.remove(&partition);
            return (Verdict::Apply, 0);
        }
        let low = low().min(expected);
        let to = match self.rewound_to.get(&partition) {
            None => expected - PRODUCER_BATCH_MESSAGES,
            Some(&last) if last > low => expected - 2 * (expected - last),
            // Read from the very start and still missing: the broker does not have them.
            Some(_) => {
                self.rewound_to.remove(&partition);
                self.next.insert(partition, offset + 1);
                return (Verdict::Apply, offset - expected);
            }
        }
        .max(low);
        self.rewound_to.insert(partition, to);
        (Verdict::Rewind { to }, 0)
    }

    /// The next offset to apply of a partition: what to commit once the
    /// records before it are stored.
    pub fn position(&self, partition: i32) -> Option<i64> {
        self.next.get(&partition).copied()
    }
}

/// Where each partition of `topic` resumes after an assignment: the group's
/// committed offset, or the first retained record where none is committed.
/// The publishing span's context, from the message's `traceparent` header.
fn trace_of(message: &OwnedMessage) -> Option<TraceParent> {
    message
        .headers()?
        .iter()
        .find(|header| header.key == TRACEPARENT)
        .and_then(|header| std::str::from_utf8(header.value?).ok())
        .map(TraceParent::from_record)
}

fn resume_positions(bus: &KafkaBus, committed: &[i64]) -> Vec<(i32, i64)> {
    committed
        .iter()
        .enumerate()
        .filter_map(|(p, &c)| {
            let p = p as i32;
            if c >= 0 {
                Some((p, c))
            } else {
                bus.observer
                    .fetch_watermarks(&bus.topic, p, bus.timeout)
                    .ok()
                    .map(|(low, _)| (p, low))
            }
        })
        .collect()
}

#[async_trait::async_trait]
impl BusBackend for KafkaBus {
    async fn publish(
        &self,
        envelope: &RowEnvelope,
        trace: Option<&TraceParent>,
    ) -> Result<(), BusError> {
        Ok(self.publish_rows(envelope, trace).await?)
    }

    async fn dead_letter(&self, letter: DeadLetter<'_>) -> Result<(), BusError> {
        Ok(self.publish_dead_letter(letter).await?)
    }

    async fn ping(&self) -> Result<(), BusError> {
        Ok(self.ping_brokers().await?)
    }

    async fn lag(&self, _: &Store) -> Result<u64, BusError> {
        Ok(u64::try_from(self.lag_records().await?).unwrap_or(0))
    }

    /// Reads the topic's high watermarks and waits until the group has
    /// committed through them, whichever process consumed the records.
    async fn catch_up(&self, _: &Store, wait: CatchUp<'_>) -> (bool, String) {
        match self.reach_fence(wait.timeout).await {
            Ok((reached, fence)) => (reached, fence.key()),
            Err(e) => {
                tracing::warn!("reading the bus position failed: {e}");
                (false, String::new())
            }
        }
    }

    fn reader(
        &self,
        _: &Store,
        metrics: BusConsumerMetrics,
    ) -> Result<Box<dyn BusReader>, BusError> {
        let consumer = Arc::new(self.consumer()?);
        tokio::spawn(watch_orphans(
            consumer.clone(),
            self.clone(),
            self.topic.clone(),
        ));
        Ok(Box::new(GroupReader {
            consumer,
            bus: self.clone(),
            metrics,
            continuity: Continuity::default(),
            generation: u64::MAX,
            commit: TopicPartitionList::new(),
            applied: 0,
            trim: Trim::default(),
        }))
    }

    fn scope(&self) -> String {
        format!(
            "kafka|{}|{}",
            self.config.brokers.as_deref().unwrap_or(""),
            self.topic
        )
    }
}

/// Records gathered into one batch at most: the store takes a batch in a
/// few inserts, so a backlog is applied in few large batches (each insert
/// into ClickHouse makes a part per table, merged later).
const READ_BATCH: usize = 4096;

/// Payload bytes gathered into one batch at most (records of large pages
/// stop the gathering before [`READ_BATCH`] records).
const READ_BATCH_BYTES: usize = 16 << 20;

/// The aggregation consumer's reader in Kafka mode: a member of the
/// consumer group that never skips a record (see [`Continuity`]) and commits
/// only what the store has (a record the store keeps refusing is a dead
/// letter first, see [`crate::pipeline::consume`]).
struct GroupReader {
    consumer: Arc<RowConsumer>,
    bus: KafkaBus,
    metrics: BusConsumerMetrics,
    continuity: Continuity,
    /// The assignment generation `continuity` was restarted for.
    generation: u64,
    /// What to commit once the last records returned are stored.
    commit: TopicPartitionList,
    /// Records the last [`BusReader::next`] returned.
    applied: u64,
    /// When to give memory back to the system.
    trim: Trim,
}

/// Giving what a backlog's batches took from the allocator back to the
/// system ([`crate::allocator::release_free_memory`]) once the consumer has
/// caught up: when a batch ended because nothing more came (at most every
/// [`Trim::EVERY`], or at once after [`Trim::BACKLOG_BYTES`] of messages),
/// or after [`Trim::IDLE_AFTER`] without a message.
struct Trim {
    /// Messages came since the last trim.
    pending: bool,
    /// Message bytes received since the last trim.
    received: usize,
    /// The last batch ended because nothing more came.
    caught_up: bool,
    at: Instant,
}

impl Default for Trim {
    fn default() -> Trim {
        Trim {
            pending: false,
            received: 0,
            caught_up: false,
            at: Instant::now(),
        }
    }
}

impl Trim {
    const EVERY: Duration = Duration::from_secs(5);
    const IDLE_AFTER: Duration = Duration::from_secs(2);
    /// A backlog this large is trimmed after as soon as the consumer catches
    /// up: waiting for [`Trim::EVERY`] (the time since a catch-up early in
    /// the backlog) left the first queries after it beside its heap
    /// (bench-scale: 318 MB in one run, 190 MB in another).
    const BACKLOG_BYTES: usize = 64 * 1024 * 1024;

    /// `bytes` of messages came.
    fn received(&mut self, bytes: usize) {
        self.pending = true;
        self.received = self.received.saturating_add(bytes);
    }

    /// Before waiting for messages: trim if caught up and due.
    fn before_waiting(&mut self) {
        let due = self.at.elapsed() >= Self::EVERY || self.received >= Self::BACKLOG_BYTES;
        if self.caught_up && due {
            self.now();
        }
    }

    /// Nothing came for [`Trim::IDLE_AFTER`].
    fn idle(&mut self) {
        self.now();
    }

    fn now(&mut self) {
        if std::mem::take(&mut self.pending) {
            crate::allocator::release_free_memory();
            self.at = Instant::now();
            self.received = 0;
        }
    }
}

impl GroupReader {
    /// Receive what is there: at least one message, then whatever arrives
    /// within a few milliseconds.
    async fn receive(&mut self) -> Vec<rdkafka::message::OwnedMessage> {
        self.trim.before_waiting();
        let first = loop {
            match tokio::time::timeout(Trim::IDLE_AFTER, self.consumer.recv()).await {
                Err(_) => self.trim.idle(),
                Ok(Ok(m)) => break m.detach(),
                Ok(Err(e)) => {
                    tracing::warn!("kafka receive failed, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        let mut bytes = first.payload().map_or(0, <[u8]>::len);
        let mut messages = vec![first];
        let gather_until = Instant::now() + Duration::from_millis(20);
        while messages.len() < READ_BATCH && bytes < READ_BATCH_BYTES {
            let left = gather_until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.consumer.recv()).await {
                Ok(Ok(m)) => {
                    bytes += m.payload().map_or(0, <[u8]>::len);
                    messages.push(m.detach());
                }
                _ => {
                    self.trim.received(bytes);
                    self.trim.caught_up = true;
                    return messages;
                }
            }
        }
        self.trim.received(bytes);
        self.trim.caught_up = false;
        messages
    }

    /// After an assignment change, learn where each partition resumed.
    async fn follow_assignment(&mut self) {
        let now = self.consumer.context().generation();
        if now == self.generation {
            return;
        }
        match self.bus.committed().await {
            Ok(committed) => {
                let observer = self.bus.clone();
                let starts =
                    tokio::task::spawn_blocking(move || resume_positions(&observer, &committed))
                        .await
                        .unwrap_or_default();
                self.continuity.restart(starts);
                self.generation = now;
            }
            Err(e) => tracing::warn!("reading the group's offsets failed: {e}"),
        }
    }
}

#[async_trait::async_trait]
impl BusReader for GroupReader {
    async fn next(&mut self) -> Vec<Record> {
        let messages = self.receive().await;
        self.follow_assignment().await;
        let topic = self.bus.topic.clone();
        let mut records = Vec::new();
        let mut touched: std::collections::BTreeSet<i32> = Default::default();
        let mut rewound: std::collections::BTreeSet<i32> = Default::default();
        for m in &messages {
            let (partition, offset) = (m.partition(), m.offset());
            if rewound.contains(&partition) {
                continue;
            }
            let low = || {
                self.bus
                    .observer
                    .fetch_watermarks(&topic, partition, self.bus.timeout)
                    .map(|(low, _)| low)
                    .unwrap_or(0)
            };
            let (verdict, missing) = self.continuity.observe(partition, offset, low);
            if missing > 0 {
                tracing::error!(
                    partition,
                    offset,
                    missing,
                    "records before this one are not on the broker any more; they are skipped"
                );
                self.metrics.skipped_records.inc_by(missing as u64);
            }
            touched.insert(partition);
            match verdict {
                Verdict::Skip => continue,
                Verdict::Rewind { to } => {
                    tracing::warn!(partition, offset, rewind_to = to, "the broker skipped records of this partition; reading it again from an earlier offset");
                    self.metrics.rewinds.inc();
                    rewound.insert(partition);
                    if let Err(e) =
                        self.consumer
                            .seek(&topic, partition, Offset::Offset(to), self.bus.timeout)
                    {
                        tracing::error!(partition, "rewinding the partition failed: {e}");
                    }
                    continue;
                }
                Verdict::Apply => {}
            }
            match m.payload().map(super::record::decode).transpose() {
                Ok(Some(envelope)) => records.push(Record {
                    position: None,
                    envelope,
                    trace: trace_of(m),
                    kept: None,
                }),
                Ok(None) => {}
                Err(e) => tracing::error!(partition, offset, "undecodable record skipped: {e}"),
            }
        }
        self.applied = records.len() as u64;
        // Commit each partition's position once stored: past what was
        // applied, and past records read again that were applied before.
        self.commit = TopicPartitionList::new();
        for partition in touched.difference(&rewound) {
            let Some(offset) = self.continuity.position(*partition) else {
                continue;
            };
            if let Err(e) =
                self.commit
                    .add_partition_offset(&topic, *partition, Offset::Offset(offset))
            {
                tracing::error!("building the commit failed: {e}");
            }
        }
        records
    }

    async fn done(&mut self) {
        self.metrics.applied_records.inc_by(self.applied);
        if self.commit.count() == 0 {
            return;
        }
        // Asynchronous: a commit stuck in a rebalance must not stall
        // consumption (the rows are stored; a redelivery is harmless).
        if let Err(e) = self.consumer.commit(&self.commit, CommitMode::Async) {
            // A rebalance took the partitions: the new owner re-applies, harmlessly.
            tracing::warn!(
                "committing offsets failed (the rows are stored; a redelivery is harmless): {e}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trickle is trimmed after at most every [`Trim::EVERY`]; a backlog
    /// as soon as the consumer has caught up with it.
    #[test]
    fn a_backlog_is_trimmed_as_soon_as_it_is_caught_up_with() {
        let mut trim = Trim::default();
        trim.received(1024);
        trim.caught_up = true;
        trim.before_waiting();
        assert!(trim.pending, "a trickle waits for Trim::EVERY");

        trim.received(Trim::BACKLOG_BYTES);
        trim.caught_up = false;
        trim.before_waiting();
        assert!(trim.pending, "not while the backlog is still being read");
        trim.caught_up = true;
        trim.before_waiting();
        assert!(!trim.pending, "trimmed once caught up");
        assert_eq!(trim.received, 0);

        trim.at -= Trim::EVERY;
        trim.received(1);
        trim.before_waiting();
        assert!(!trim.pending, "a trickle after Trim::EVERY");
    }

    #[test]
    fn replicas_follow_the_cluster_and_keep_one_spare() {
        let r = |wanted, brokers| {
            let r = Replicas::for_cluster(wanted, brokers);
            (r.factor, r.min_insync)
        };
        assert_eq!(r(3, 5), (3, 2));
        assert_eq!(r(3, 3), (3, 2));
        assert_eq!(r(3, 2), (2, 1));
        assert_eq!(r(3, 1), (1, 1));
        assert_eq!(r(1, 3), (1, 1));
        assert_eq!(r(5, 0), (1, 1));
    }

    #[test]
    fn records_in_order_are_applied_and_repeats_skipped() {
        let mut c = Continuity::default();
        c.restart([(0, 10)]);
        assert_eq!(c.observe(0, 10, || 0), (Verdict::Apply, 0));
        assert_eq!(c.observe(0, 11, || 0), (Verdict::Apply, 0));
        assert_eq!(c.observe(0, 5, || 0), (Verdict::Skip, 0));
        assert_eq!(c.observe(0, 11, || 0), (Verdict::Skip, 0));
        // A partition never seen starts where its first record is.
        assert_eq!(c.observe(3, 40, || 0), (Verdict::Apply, 0));
        assert_eq!(c.observe(3, 41, || 0), (Verdict::Apply, 0));
    }

    #[test]
    fn a_gap_rewinds_further_each_time_until_the_record_arrives() {
        let mut c = Continuity::default();
        c.restart([(1, 200)]);
        // The broker answered a fetch from 200 with the next batch, at 230.
        assert_eq!(c.observe(1, 230, || 0), (Verdict::Rewind { to: 136 }, 0));
        assert_eq!(c.observe(1, 230, || 0), (Verdict::Rewind { to: 72 }, 0));
        // From 72 the broker returns the batch that holds 200.
        assert_eq!(c.observe(1, 150, || 0), (Verdict::Skip, 0));
        assert_eq!(c.observe(1, 200, || 0), (Verdict::Apply, 0));
        assert_eq!(c.observe(1, 201, || 0), (Verdict::Apply, 0));
        // A later gap starts again with the smallest step.
        assert_eq!(c.observe(1, 300, || 0), (Verdict::Rewind { to: 138 }, 0));
    }

    #[test]
    fn rewinds_stop_at_the_start_and_report_what_the_broker_lacks() {
        let mut c = Continuity::default();
        c.restart([(0, 30)]);
        assert_eq!(c.observe(0, 40, || 20), (Verdict::Rewind { to: 20 }, 0));
        // Read from the first retained record and 30..39 still missing.
        assert_eq!(c.observe(0, 40, || 20), (Verdict::Apply, 10));
        assert_eq!(c.observe(0, 41, || 20), (Verdict::Apply, 0));
    }

    #[test]
    fn a_restart_never_moves_a_partition_back() {
        let mut c = Continuity::default();
        c.restart([(0, 10)]);
        assert_eq!(c.observe(0, 10, || 0), (Verdict::Apply, 0));
        // The group's commit of 11 has not landed yet: this member knows better.
        c.restart([(0, 5)]);
        assert_eq!(c.observe(0, 10, || 0), (Verdict::Skip, 0));
        assert_eq!(c.observe(0, 11, || 0), (Verdict::Apply, 0));
        // Another member moved it on meanwhile.
        c.restart([(0, 50)]);
        assert_eq!(c.observe(0, 20, || 0), (Verdict::Skip, 0));
        assert_eq!(c.observe(0, 50, || 0), (Verdict::Apply, 0));
    }
}
