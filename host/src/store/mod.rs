//! The store: aggregated facts, deltas and the ad hierarchy, and the queries
//! insights are computed from.
//!
//! [`Store`] is the contract; [`sqlite`] (embedded, `<data_dir>/store.db`) and
//! [`clickhouse`] implement it. Nothing outside this folder names a store kind.

pub mod clickhouse;
pub mod sqlite;

use std::collections::BTreeMap;
use std::time::Duration;

use crate::insights::Fact;
use crate::row::{Row, RowEnvelope};

pub use sqlite::EmbeddedStore;

/// The store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store database error")]
    Database(#[from] sqlx::Error),
    #[error("ClickHouse: {0}")]
    Engine(String),
}

/// The configured store: embedded SQLite or ClickHouse.
#[derive(Clone)]
pub enum Store {
    Embedded(EmbeddedStore),
    ClickHouse(Box<crate::store::clickhouse::ClickHouseStore>),
}

macro_rules! dispatch {
    ($self:expr, $s:ident => $body:expr) => {
        match $self {
            Store::Embedded($s) => $body,
            Store::ClickHouse($s) => $body,
        }
    };
}

impl Store {
    /// Bus offset of the last applied record.
    pub fn applied_offset(&self) -> u64 {
        dispatch!(self, s => s.applied_offset())
    }

    /// Wait until records through `offset` are applied; false on timeout.
    pub async fn wait_applied(&self, offset: u64, timeout: Duration) -> bool {
        dispatch!(self, s => s.wait_applied(offset, timeout).await)
    }

    /// Apply records (bus offset, rows) and record the offset.
    pub async fn apply(&self, records: &[(u64, RowEnvelope)]) -> Result<(), StoreError> {
        dispatch!(self, s => s.apply(records).await)
    }

    /// Snapshot facts of `tenant` in `[from, to]` (day numbers) matching `filter`.
    pub async fn snapshots(
        &self,
        tenant: &str,
        from: i32,
        to: i32,
        filter: &FactFilter,
    ) -> Result<Vec<Fact>, StoreError> {
        dispatch!(self, s => s.snapshots(tenant, from, to, filter).await)
    }

    /// Deltas of `tenant` in `[from, to]`, placed through the ad hierarchy.
    pub async fn deltas(
        &self,
        tenant: &str,
        from: i32,
        to: i32,
        filter: &FactFilter,
    ) -> Result<Vec<Fact>, StoreError> {
        dispatch!(self, s => s.deltas(tenant, from, to, filter).await)
    }

    /// Extra metric names seen for `tenant`.
    pub async fn extra_metric_names(&self, tenant: &str) -> Result<Vec<String>, StoreError> {
        dispatch!(self, s => s.extra_metric_names(tenant).await)
    }

    /// Campaigns of `tenant`.
    pub async fn campaigns(&self, tenant: &str) -> Result<Vec<Campaign>, StoreError> {
        dispatch!(self, s => s.campaigns(tenant).await)
    }

    /// Stored rows of `tenant` per producing adapter and version (embedded only).
    pub async fn adapter_versions(
        &self,
        tenant: &str,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        match self {
            Store::Embedded(s) => s.adapter_versions(tenant).await,
            Store::ClickHouse(_) => Ok(vec![]),
        }
    }

    /// The store answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.ping().await)
    }
}

/// Filters of a facts query; `None` = no filter.
#[derive(Clone, Debug, Default)]
pub struct FactFilter {
    pub platforms: Option<Vec<String>>,
    pub account_ids: Option<Vec<String>>,
    pub campaign_ids: Option<Vec<String>>,
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

pub(crate) type EntityKey = (String, String, &'static str, String);

/// What the hierarchy knows of one campaign, ad group or ad.
pub(crate) struct Entity {
    pub(crate) account_id: String,
    pub(crate) campaign_id: String,
    pub(crate) ad_group_id: Option<String>,
    pub(crate) campaign_name: Option<String>,
    pub(crate) currency: String,
}

pub(crate) fn collect_hierarchy(
    entities: &mut BTreeMap<EntityKey, Entity>,
    tenant: &str,
    row: &Row,
) {
    let (Some(campaign_id), Some(currency)) = (&row.campaign_id, &row.currency) else {
        return;
    };
    let entity = |ad_group_id: Option<&String>, campaign_name: Option<&String>| Entity {
        account_id: row.account_id.clone(),
        campaign_id: campaign_id.clone(),
        ad_group_id: ad_group_id.cloned(),
        campaign_name: campaign_name.cloned(),
        currency: currency.clone(),
    };
    let key = |level: &'static str, id: &String| {
        (tenant.to_owned(), row.platform.clone(), level, id.clone())
    };
    let campaign = entities
        .entry(key("campaign", campaign_id))
        .or_insert_with(|| entity(None, None));
    if row.campaign_name.is_some() {
        campaign.campaign_name = row.campaign_name.clone();
    }
    if let Some(ad_group) = &row.ad_group_id {
        entities.insert(key("ad_group", ad_group), entity(None, None));
    }
    if let Some(ad) = &row.ad_id {
        entities.insert(key("ad", ad), entity(row.ad_group_id.as_ref(), None));
    }
}
