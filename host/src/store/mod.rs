//! The store: aggregated facts, deltas and the ad hierarchy, and the reads
//! insights are computed from.
//!
//! [`StoreBackend`] is the contract; [`sqlite`] (embedded, `<data_dir>/store.db`)
//! and [`clickhouse`] implement it, and [`Store`] is the handle the rest of
//! adpipe holds. What the backends share is written once here: [`batch`]
//! classifies bus records into snapshots, deltas and entities, and
//! [`hierarchy`] places deltas that name only their ad. Nothing outside this
//! folder names a store kind.
//!
//! Exactly-once in effect (docs/contracts.md §2), in both backends:
//! - snapshots replace the values of their identity only when strictly newer
//!   (`observed_at`);
//! - deltas count once per `(tenant, platform, dedup_key)`;
//! - when the bus keeps its position in the store (the embedded log), the
//!   position is written with the rows, so a crash between the two replays
//!   the batch, harmlessly.
//!
//! Every read binds the tenant: scoping lives in the query layer.

pub mod batch;
pub mod clickhouse;
pub mod hierarchy;
pub mod sqlite;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{StoreConfig, StoreKind};
use crate::insights::{Dimension, Fact, Granularity, Summed};
use crate::row::RowEnvelope;

pub use batch::Batch;
pub use hierarchy::{Known, StoredDelta};

/// The store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("store database error: {0}")]
    Embedded(#[from] rusqlite::Error),
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] ::clickhouse::error::Error),
    #[error("day {0} is outside the days the store can hold (1970-01-01..2149-06-06)")]
    DayOutOfRange(i32),
    #[error("store.kind = \"clickhouse\" needs store.url")]
    MissingUrl,
    #[error("a sharded ClickHouse store needs store.database")]
    ShardsNeedDatabase,
}

/// What every store backend does. Reads return rows of one tenant only.
#[async_trait::async_trait]
pub trait StoreBackend: Send + Sync {
    /// Write a classified batch, and its bus position when it has one, so
    /// that both land or neither does (or a replay is harmless).
    async fn write(&self, batch: &Batch<'_>) -> Result<()>;
    /// The last bus position written with rows (0 when none ever was), as
    /// stored: read once at open, then [`Store`] follows its own writes.
    async fn stored_position(&self) -> Result<u64>;
    /// Snapshot facts of `tenant` on `days` that `filter` selects.
    async fn snapshots(&self, tenant: &str, days: Days, filter: &FactFilter) -> Result<Vec<Fact>>;
    /// Snapshot sums of `tenant` per answer row of `query`, summed by the
    /// database (one report per campaign-day, as [`crate::insights`] says).
    async fn aggregate(&self, tenant: &str, query: &Aggregate<'_>) -> Result<Vec<Summed>>;
    /// Deltas of `tenant` on `days`, as stored (not yet placed).
    async fn stored_deltas(&self, tenant: &str, days: Days) -> Result<Vec<StoredDelta>>;
    /// What the hierarchy knows of the `level` entities (`campaign`, `ad_group`, `ad`) `ids` of `tenant`.
    async fn known(&self, tenant: &str, level: &str, ids: &[String]) -> Result<Vec<Known>>;
    /// Extra metric names seen for `tenant`.
    async fn extra_metric_names(&self, tenant: &str) -> Result<Vec<String>>;
    /// Campaigns of `tenant`.
    async fn campaigns(&self, tenant: &str) -> Result<Vec<Campaign>>;
    /// Stored rows of `tenant` per producing adapter and version.
    async fn adapter_versions(&self, tenant: &str) -> Result<Vec<AdapterRows>>;
    /// The store answers.
    async fn ping(&self) -> Result<()>;
    /// The consumer has caught up: tidy what a burst of writes left (the
    /// embedded store folds its write-ahead log into the database, so reads
    /// need not search it). Nothing by default.
    async fn settle(&self) -> Result<()> {
        Ok(())
    }
    /// Names the data this store holds (see [`crate::bus::BusBackend::scope`]).
    fn scope(&self) -> String;
}

/// What the store's operations return.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Days since 1970-01-01, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Days {
    pub from: i32,
    pub to: i32,
}

/// Filters of a facts query; `None` = no filter.
#[derive(Clone, Debug, Default)]
pub struct FactFilter {
    pub platforms: Option<Vec<String>>,
    pub account_ids: Option<Vec<String>>,
    pub campaign_ids: Option<Vec<String>>,
    pub currencies: Option<Vec<String>>,
}

impl FactFilter {
    /// Whether `fact` passes every filter.
    pub fn selects(&self, fact: &Fact) -> bool {
        let keep = |values: &Option<Vec<String>>, v: &str| {
            values
                .as_ref()
                .is_none_or(|list| list.iter().any(|x| x == v))
        };
        keep(&self.platforms, &fact.platform)
            && keep(&self.account_ids, &fact.account_id)
            && keep(&self.campaign_ids, &fact.campaign_id)
            && keep(&self.currencies, &fact.currency)
    }

    /// `(column, values)` of each filter that is set.
    pub fn columns(&self) -> impl Iterator<Item = (&'static str, &[String])> {
        [
            ("platform", &self.platforms),
            ("account_id", &self.account_ids),
            ("campaign_id", &self.campaign_ids),
            ("currency", &self.currencies),
        ]
        .into_iter()
        .filter_map(|(column, values)| values.as_deref().map(|v| (column, v)))
    }
}

/// What `/v1/insights` asks a store: snapshot sums per answer row.
#[derive(Clone, Copy, Debug)]
pub struct Aggregate<'a> {
    pub days: Days,
    pub filter: &'a FactFilter,
    pub granularity: Granularity,
    /// The requested grouping (ad group or ad: answered from the facts;
    /// otherwise from the campaign-day rollups).
    pub group_by: &'a [Dimension],
    /// Extra metrics to sum (names the tenant's data uses).
    pub extras: &'a [String],
}

impl Aggregate<'_> {
    /// The dimensions of each answer row, in [`Summed::values`] order.
    pub fn dimensions(&self) -> Vec<Dimension> {
        crate::insights::answer_dimensions(self.group_by)
    }
}

/// An answer row's key: bucket, dimension values, currency.
pub type SumKey = (Option<i32>, Vec<Option<String>>, String);

/// Add extra-metric sums (`(row key, name, value)`, summed by a store apart
/// from the base metrics) to the answer rows `out`, adding a row for a key
/// `out` lacks; zero sums are left out.
pub fn add_extras(out: &mut Vec<Summed>, extras: impl IntoIterator<Item = (SumKey, String, i64)>) {
    let mut index: std::collections::HashMap<SumKey, usize> = out
        .iter()
        .enumerate()
        .map(|(i, row)| ((row.bucket, row.values.clone(), row.currency.clone()), i))
        .collect();
    for (key, name, value) in extras {
        if value == 0 {
            continue;
        }
        let i = *index.entry(key.clone()).or_insert_with(|| {
            out.push(Summed {
                bucket: key.0,
                values: key.1,
                currency: key.2,
                sums: crate::insights::Sums::default(),
            });
            out.len() - 1
        });
        out[i].sums.extras.insert(name, value);
    }
}

/// A campaign the tenant's data names.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Campaign {
    pub platform: String,
    pub account_id: String,
    pub campaign_id: String,
    pub name: Option<String>,
    pub currency: String,
}

/// How many stored rows one adapter version produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterRows {
    pub adapter: String,
    pub version: String,
    pub rows: i64,
}

/// The configured store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn StoreBackend>,
    /// The last bus position written with rows, for those who wait on it.
    applied: Arc<watch::Sender<u64>>,
    /// Told when someone starts waiting for a position not applied yet.
    awaited: Arc<tokio::sync::Notify>,
}

impl Store {
    /// Open the store `config` names (the embedded one in `data_dir`).
    pub async fn open(config: &StoreConfig, data_dir: &Path) -> Result<Store> {
        let backend: Arc<dyn StoreBackend> = match config.kind {
            StoreKind::Embedded => {
                Arc::new(sqlite::EmbeddedStore::open(&data_dir.join("store.db")).await?)
            }
            StoreKind::Clickhouse => {
                let url = config.url.as_deref().ok_or(StoreError::MissingUrl)?;
                let sharding = config.cluster.as_ref().map(|cluster| clickhouse::Sharding {
                    cluster: cluster.clone(),
                    shards: config.shards.clone(),
                });
                Arc::new(
                    clickhouse::ClickHouseStore::open_with(
                        url,
                        config.database.as_deref(),
                        sharding.as_ref(),
                    )
                    .await?,
                )
            }
        };
        Store::over(backend).await
    }

    /// A store over `backend` (tests open one backend directly).
    pub async fn with_backend(backend: impl StoreBackend + 'static) -> Result<Store> {
        Store::over(Arc::new(backend)).await
    }

    async fn over(backend: Arc<dyn StoreBackend>) -> Result<Store> {
        let (applied, _) = watch::channel(backend.stored_position().await?);
        Ok(Store {
            backend,
            applied: Arc::new(applied),
            awaited: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// Apply the rows of `envelopes`, and `through` (the bus position they
    /// end at, when the store keeps the bus's position).
    pub async fn apply(&self, envelopes: &[&RowEnvelope], through: Option<u64>) -> Result<()> {
        let batch = batch::classify(envelopes, through);
        if batch.is_empty() && through.is_none() {
            return Ok(());
        }
        self.backend.write(&batch).await?;
        if let Some(through) = through {
            self.applied.send_modify(|a| *a = (*a).max(through));
        }
        Ok(())
    }

    /// The last bus position written with rows (0 when none ever was).
    pub fn applied_position(&self) -> u64 {
        *self.applied.borrow()
    }

    /// See [`StoreBackend::settle`].
    pub async fn settle(&self) -> Result<()> {
        self.backend.settle().await
    }

    /// Returns when someone waits for rows not applied yet (see
    /// [`Store::wait_applied`]), or at once if someone began to since the
    /// last call: a consumer that holds back to batch a trickle stops
    /// holding back for a reader waiting on its own writes.
    pub async fn applied_awaited(&self) {
        self.awaited.notified().await
    }

    /// Wait until rows through `position` are applied; false on timeout.
    pub async fn wait_applied(&self, position: u64, timeout: Duration) -> bool {
        let mut applied = self.applied.subscribe();
        if *applied.borrow() < position {
            self.awaited.notify_one();
        }
        let reached = tokio::time::timeout(timeout, applied.wait_for(|&a| a >= position)).await;
        reached.is_ok()
    }

    /// Snapshot facts of `tenant` on `days` that `filter` selects.
    pub async fn snapshots(
        &self,
        tenant: &str,
        days: Days,
        filter: &FactFilter,
    ) -> Result<Vec<Fact>> {
        self.backend.snapshots(tenant, days, filter).await
    }

    /// Snapshot sums of `tenant` per answer row of `query`, summed by the store.
    pub async fn aggregate(&self, tenant: &str, query: &Aggregate<'_>) -> Result<Vec<Summed>> {
        self.backend.aggregate(tenant, query).await
    }

    /// Deltas of `tenant` on `days`, placed through the ad hierarchy and
    /// filtered; deltas that cannot be placed yet are left out.
    pub async fn deltas(&self, tenant: &str, days: Days, filter: &FactFilter) -> Result<Vec<Fact>> {
        let stored = self.backend.stored_deltas(tenant, days).await?;
        if stored.is_empty() {
            return Ok(vec![]);
        }
        // Only the ads the deltas name, then the ad groups they or those ads name.
        let ads = hierarchy::ads_named(&stored);
        let mut known = if ads.is_empty() {
            vec![]
        } else {
            self.backend.known(tenant, "ad", &ads).await?
        };
        let groups = hierarchy::ad_groups_named(&stored, &known);
        if !groups.is_empty() {
            known.extend(self.backend.known(tenant, "ad_group", &groups).await?);
        }
        Ok(hierarchy::place(stored, &known, filter))
    }

    /// Display names of the `level` entities (`campaign`, `ad_group`, `ad`)
    /// `ids` of `tenant`, by `(platform, id)`; entities no row named are absent.
    pub async fn names(
        &self,
        tenant: &str,
        level: &str,
        ids: &[String],
    ) -> Result<HashMap<(String, String), String>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        Ok(self
            .backend
            .known(tenant, level, ids)
            .await?
            .into_iter()
            .filter_map(|k| Some(((k.platform, k.id), k.entity.name?)))
            .collect())
    }

    /// Extra metric names seen for `tenant`.
    pub async fn extra_metric_names(&self, tenant: &str) -> Result<Vec<String>> {
        self.backend.extra_metric_names(tenant).await
    }

    /// Campaigns of `tenant`.
    pub async fn campaigns(&self, tenant: &str) -> Result<Vec<Campaign>> {
        self.backend.campaigns(tenant).await
    }

    /// Stored rows of `tenant` per producing adapter and version.
    pub async fn adapter_versions(&self, tenant: &str) -> Result<Vec<AdapterRows>> {
        self.backend.adapter_versions(tenant).await
    }

    /// The store answers.
    pub async fn ping(&self) -> Result<()> {
        self.backend.ping().await
    }

    /// Names the data this store holds, for caches shared by deployments.
    pub fn scope(&self) -> String {
        self.backend.scope()
    }
}
