//! The plugin registry in the shared metadata store: components deployed to
//! the fleet, stored by content hash; the version each plugin should run —
//! fleet-wide, or pinned to one pipeline as a canary; and the version each
//! live host serves, as the hosts report it after every reconcile. The
//! hosts' side (learning of changes, fetching, swapping) is
//! `crate::plugin::rollout`.

use serde::Serialize;
use sqlx::Row as _;

use super::{on_pool, Metadata, MetadataError, Pool};

/// The `pipeline` of a fleet-wide row (every pipeline without a pin).
const FLEET: &str = "";

/// How long a host that stopped reporting stays in `plugin_hosts`.
const FORGET_HOSTS_AFTER_MS: i64 = 24 * 3_600_000;

/// A component as stored.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct StoredVersion {
    pub plugin: String,
    pub content_hash: String,
    pub version: String,
    /// The base64 public key whose signature was verified, if one was required.
    pub signed_by: Option<String>,
    pub deployed_by: String,
    pub deployed_at_ms: i64,
}

/// The version a plugin should run: fleet-wide (`pipeline` `None`) or on one
/// pipeline (a canary pin).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Desired {
    pub plugin: String,
    pub pipeline: Option<String>,
    pub content_hash: String,
    pub version: String,
    /// What the fleet ran before (what a rollback returns to).
    pub previous_hash: Option<String>,
    pub updated_by: String,
    pub updated_at_ms: i64,
}

/// What one host serves for one plugin (and each of its pinned pipelines).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct HostReport {
    pub host: String,
    pub plugin: String,
    pub pipeline: Option<String>,
    pub content_hash: String,
    pub version: String,
    /// Why the host could not converge, while it cannot.
    pub last_error: Option<String>,
    pub seen_at_ms: i64,
}

fn pipeline_column(pipeline: Option<&str>) -> &str {
    pipeline.unwrap_or(FLEET)
}

fn pipeline_of(column: String) -> Option<String> {
    (column != FLEET).then_some(column)
}

impl Metadata {
    /// Store a component under its content hash (a second upload of the same
    /// bytes keeps the first record).
    pub async fn store_plugin_version(
        &self,
        version: &StoredVersion,
        component: &[u8],
    ) -> Result<(), MetadataError> {
        on_pool!(&self.pool, pool => {
            sqlx::query(
                "INSERT INTO plugin_versions
                 (plugin, content_hash, version, component, signed_by, deployed_by, deployed_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (plugin, content_hash) DO NOTHING",
            )
            .bind(&version.plugin)
            .bind(&version.content_hash)
            .bind(&version.version)
            .bind(component)
            .bind(&version.signed_by)
            .bind(&version.deployed_by)
            .bind(version.deployed_at_ms)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// A stored component's bytes.
    pub async fn plugin_component(
        &self,
        plugin: &str,
        content_hash: &str,
    ) -> Result<Option<Vec<u8>>, MetadataError> {
        on_pool!(&self.pool, pool => {
            Ok(sqlx::query(
                "SELECT component FROM plugin_versions WHERE plugin = $1 AND content_hash = $2",
            )
            .bind(plugin)
            .bind(content_hash)
            .fetch_optional(pool)
            .await?
            .map(|r| r.get(0)))
        })
    }

    /// Every stored version of `plugin`, newest first.
    pub async fn plugin_versions(&self, plugin: &str) -> Result<Vec<StoredVersion>, MetadataError> {
        on_pool!(&self.pool, pool => {
            Ok(sqlx::query(
                "SELECT plugin, content_hash, version, signed_by, deployed_by, deployed_at_ms
                 FROM plugin_versions WHERE plugin = $1 ORDER BY deployed_at_ms DESC, content_hash",
            )
            .bind(plugin)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| StoredVersion {
                plugin: r.get(0),
                content_hash: r.get(1),
                version: r.get(2),
                signed_by: r.get(3),
                deployed_by: r.get(4),
                deployed_at_ms: r.get(5),
            })
            .collect())
        })
    }

    /// Make `content_hash` (stored) the version of `plugin` on `pipeline`
    /// (a canary pin) or, with `None`, on the whole fleet — which also
    /// clears every pin of the plugin (the canary is promoted or abandoned).
    pub async fn set_desired_plugin(
        &self,
        plugin: &str,
        pipeline: Option<&str>,
        content_hash: &str,
        actor: &str,
    ) -> Result<(), MetadataError> {
        let now = chrono::Utc::now().timestamp_millis();
        on_pool!(&self.pool, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO plugin_desired
                 (plugin, pipeline, content_hash, previous_hash, updated_by, updated_at_ms)
                 VALUES ($1, $2, $3, NULL, $4, $5)
                 ON CONFLICT (plugin, pipeline) DO UPDATE SET
                   previous_hash = CASE WHEN plugin_desired.content_hash = excluded.content_hash
                                   THEN plugin_desired.previous_hash
                                   ELSE plugin_desired.content_hash END,
                   content_hash = excluded.content_hash,
                   updated_by = excluded.updated_by,
                   updated_at_ms = excluded.updated_at_ms",
            )
            .bind(plugin)
            .bind(pipeline_column(pipeline))
            .bind(content_hash)
            .bind(actor)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if pipeline.is_none() {
                sqlx::query("DELETE FROM plugin_desired WHERE plugin = $1 AND pipeline <> $2")
                    .bind(plugin)
                    .bind(FLEET)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Return the fleet to the version it ran before the current one (and
    /// clear the pins); `false` when there is none to return to.
    pub async fn rollback_plugin(&self, plugin: &str, actor: &str) -> Result<bool, MetadataError> {
        let now = chrono::Utc::now().timestamp_millis();
        on_pool!(&self.pool, pool => {
            let mut tx = pool.begin().await?;
            let swapped = sqlx::query(
                "UPDATE plugin_desired SET content_hash = previous_hash, previous_hash = content_hash,
                   updated_by = $3, updated_at_ms = $4
                 WHERE plugin = $1 AND pipeline = $2 AND previous_hash IS NOT NULL",
            )
            .bind(plugin)
            .bind(FLEET)
            .bind(actor)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if swapped {
                sqlx::query("DELETE FROM plugin_desired WHERE plugin = $1 AND pipeline <> $2")
                    .bind(plugin)
                    .bind(FLEET)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(swapped)
        })
    }

    /// The desired versions of `plugin`: the fleet-wide one first, then pins.
    pub async fn desired_plugin(&self, plugin: &str) -> Result<Vec<Desired>, MetadataError> {
        on_pool!(&self.pool, pool => {
            Ok(sqlx::query(
                "SELECT d.plugin, d.pipeline, d.content_hash, v.version, d.previous_hash,
                        d.updated_by, d.updated_at_ms
                 FROM plugin_desired d JOIN plugin_versions v
                   ON v.plugin = d.plugin AND v.content_hash = d.content_hash
                 WHERE d.plugin = $1 ORDER BY d.pipeline",
            )
            .bind(plugin)
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|r| Desired {
                plugin: r.get(0),
                pipeline: pipeline_of(r.get(1)),
                content_hash: r.get(2),
                version: r.get(3),
                previous_hash: r.get(4),
                updated_by: r.get(5),
                updated_at_ms: r.get(6),
            })
            .collect())
        })
    }

    /// Replace what `host` reports for `plugin` with `reports`.
    pub async fn report_plugin_host(
        &self,
        host: &str,
        plugin: &str,
        reports: &[HostReport],
    ) -> Result<(), MetadataError> {
        on_pool!(&self.pool, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM plugin_hosts WHERE host = $1 AND plugin = $2")
                .bind(host)
                .bind(plugin)
                .execute(&mut *tx)
                .await?;
            // Hosts gone for a day (every restart is a new host id) are forgotten.
            sqlx::query("DELETE FROM plugin_hosts WHERE plugin = $1 AND seen_at_ms < $2")
                .bind(plugin)
                .bind(chrono::Utc::now().timestamp_millis() - FORGET_HOSTS_AFTER_MS)
                .execute(&mut *tx)
                .await?;
            for r in reports {
                sqlx::query(
                    "INSERT INTO plugin_hosts
                     (host, plugin, pipeline, content_hash, version, last_error, seen_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(host)
                .bind(plugin)
                .bind(pipeline_column(r.pipeline.as_deref()))
                .bind(&r.content_hash)
                .bind(&r.version)
                .bind(&r.last_error)
                .bind(r.seen_at_ms)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// What every host seen since `since_ms` serves for `plugin`.
    pub async fn plugin_hosts(
        &self,
        plugin: &str,
        since_ms: i64,
    ) -> Result<Vec<HostReport>, MetadataError> {
        on_pool!(&self.pool, pool => {
            Ok(sqlx::query(
                "SELECT host, plugin, pipeline, content_hash, version, last_error, seen_at_ms
                 FROM plugin_hosts WHERE plugin = $1 AND seen_at_ms >= $2 ORDER BY host, pipeline",
            )
            .bind(plugin)
            .bind(since_ms)
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|r| HostReport {
                host: r.get(0),
                plugin: r.get(1),
                pipeline: pipeline_of(r.get(2)),
                content_hash: r.get(3),
                version: r.get(4),
                last_error: r.get(5),
                seen_at_ms: r.get(6),
            })
            .collect())
        })
    }

    /// Tell the other hosts the registry changed (PostgreSQL `NOTIFY`; with
    /// SQLite there is one process, which reconciles itself).
    pub async fn notify_plugins_changed(&self, plugin: &str) -> Result<(), MetadataError> {
        if let Pool::Postgres(pool) = &self.pool {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(plugin)
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// A listener of registry changes (PostgreSQL only): each notification's
    /// payload is the plugin name.
    pub async fn listen_plugins_changed(
        &self,
    ) -> Result<Option<sqlx::postgres::PgListener>, MetadataError> {
        match &self.pool {
            Pool::Postgres(pool) => {
                let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
                listener.listen(CHANNEL).await?;
                Ok(Some(listener))
            }
            Pool::Sqlite(_) => Ok(None),
        }
    }
}

/// The PostgreSQL channel of registry changes.
const CHANNEL: &str = "adpipe_plugins";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MetadataUrl;

    fn version(hash: &str, v: &str) -> StoredVersion {
        StoredVersion {
            plugin: "meta".into(),
            content_hash: hash.into(),
            version: v.into(),
            signed_by: None,
            deployed_by: "ops".into(),
            deployed_at_ms: 1,
        }
    }

    #[tokio::test]
    async fn desired_versions_pin_promote_and_roll_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = MetadataUrl::Sqlite(format!("sqlite://{}", dir.path().join("m.db").display()));
        let metadata = Metadata::open(&url).await.expect("open");
        metadata
            .store_plugin_version(&version("h1", "1.0.0"), b"one")
            .await
            .expect("store");
        metadata
            .store_plugin_version(&version("h2", "2.0.0"), b"two")
            .await
            .expect("store");
        metadata
            .store_plugin_version(&version("h2", "2.0.0"), b"again")
            .await
            .expect("again");
        assert_eq!(
            metadata
                .plugin_component("meta", "h2")
                .await
                .expect("read")
                .as_deref(),
            Some(&b"two"[..])
        );
        assert!(!metadata
            .rollback_plugin("meta", "ops")
            .await
            .expect("nothing to return to"));
        metadata
            .set_desired_plugin("meta", None, "h1", "ops")
            .await
            .expect("fleet");
        metadata
            .set_desired_plugin("meta", Some("canary"), "h2", "ops")
            .await
            .expect("pin");
        let desired = metadata.desired_plugin("meta").await.expect("desired");
        let summary: Vec<_> = desired
            .iter()
            .map(|d| {
                (
                    d.pipeline.clone(),
                    d.content_hash.as_str(),
                    d.version.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (None, "h1", "1.0.0"),
                (Some("canary".into()), "h2", "2.0.0")
            ]
        );
        // Promotion: fleet-wide, pins cleared, the previous version remembered.
        metadata
            .set_desired_plugin("meta", None, "h2", "ops")
            .await
            .expect("promote");
        let desired = metadata.desired_plugin("meta").await.expect("desired");
        assert_eq!(desired.len(), 1);
        assert_eq!(
            (
                desired[0].content_hash.as_str(),
                desired[0].previous_hash.as_deref()
            ),
            ("h2", Some("h1"))
        );
        // A host that stopped reporting a day ago is forgotten when another reports.
        let report = |host: &str, seen_at_ms: i64| HostReport {
            host: host.into(),
            plugin: "meta".into(),
            pipeline: None,
            content_hash: "h2".into(),
            version: "2.0.0".into(),
            last_error: None,
            seen_at_ms,
        };
        let now = chrono::Utc::now().timestamp_millis();
        let gone = report("gone", now - FORGET_HOSTS_AFTER_MS - 1);
        metadata
            .report_plugin_host("gone", "meta", &[gone])
            .await
            .expect("report");
        metadata
            .report_plugin_host("live", "meta", &[report("live", now)])
            .await
            .expect("report");
        let hosts: Vec<String> = metadata
            .plugin_hosts("meta", 0)
            .await
            .expect("hosts")
            .into_iter()
            .map(|h| h.host)
            .collect();
        assert_eq!(hosts, ["live"]);
        assert!(metadata
            .rollback_plugin("meta", "ops")
            .await
            .expect("rollback"));
        let desired = metadata.desired_plugin("meta").await.expect("desired");
        assert_eq!(
            (
                desired[0].content_hash.as_str(),
                desired[0].previous_hash.as_deref()
            ),
            ("h1", Some("h2"))
        );
    }
}
