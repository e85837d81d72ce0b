//! Operational metadata in SQL: SQLite by default (`<data_dir>/metadata.db`),
//! PostgreSQL when `metadata.url` is `postgres://…` (TLS when the URL asks,
//! e.g. `sslmode=require`). One set of migrations and queries serves both:
//! `$n` placeholders (which SQLite also reads), and DDL whose few SQLite
//! words are translated for PostgreSQL ([`Dialect::ddl`]). Holds:
//! the dead-letter store (every payload that was accepted for processing but
//! could not be turned into rows, with its reason), pull runs, API keys
//! (hashed), the audit log of admin actions, and the plugin registry
//! ([`plugin_registry`]: components deployed to the fleet).
//!
//! Kept payloads and dead letters are sealed ([`crate::seal`]) when the
//! handle has a [`Sealer`]: the blob goes in `payload` and the sealing key's
//! id in `key_id` (`NULL` = stored before encryption, read as it is).
//! [`retention`] prunes old rows.

mod payloads;
pub mod plugin_registry;
pub mod retention;

use serde::Serialize;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::Row as _;

use crate::config::MetadataUrl;
use crate::seal::{Context, SealError, Sealer};

/// Metadata storage failed.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata database error")]
    Database(#[from] sqlx::Error),
    #[error("a kept payload could not be decoded: {0}")]
    Encoding(String),
    #[error("a kept payload could not be sealed or opened")]
    Seal(#[from] SealError),
    #[error("keeping a payload: {0}")]
    Keep(#[from] crate::group_commit::GroupCommitError),
}

/// Which SQL a pool speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// A migration's DDL in this dialect (written for SQLite).
    pub fn ddl(self, sql: &str) -> String {
        match self {
            Dialect::Sqlite => sql.to_owned(),
            Dialect::Postgres => sql.replace("INTEGER", "BIGINT").replace("BLOB", "BYTEA"),
        }
    }
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Run the same query text on whichever pool this is; `$pool` names the
/// pool inside `$body`.
macro_rules! on_pool {
    ($pool_enum:expr, $pool:ident => $body:expr) => {
        match $pool_enum {
            Pool::Sqlite($pool) => $body,
            Pool::Postgres($pool) => $body,
        }
    };
}
use on_pool;

/// Ordered schema migrations; each runs once.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE dead_letters (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        pipeline TEXT NOT NULL,
        source TEXT NOT NULL,
        received_at_ms INTEGER NOT NULL,
        code TEXT NOT NULL,
        message TEXT NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE INDEX dead_letters_by_tenant ON dead_letters (tenant, received_at_ms)",
    ),
    (
        2,
        "CREATE TABLE pull_runs (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            pipeline TEXT NOT NULL,
            account TEXT NOT NULL,
            since TEXT NOT NULL,
            until TEXT NOT NULL,
            started_at_ms INTEGER NOT NULL,
            finished_at_ms INTEGER NOT NULL,
            status TEXT NOT NULL,
            pages INTEGER NOT NULL,
            rows INTEGER NOT NULL,
            retries INTEGER NOT NULL,
            error TEXT
        );
        CREATE INDEX pull_runs_by_pipeline ON pull_runs (tenant, pipeline, started_at_ms)",
    ),
    (
        3,
        "ALTER TABLE dead_letters ADD COLUMN account_id TEXT;
        ALTER TABLE dead_letters ADD COLUMN currency TEXT;
        ALTER TABLE dead_letters ADD COLUMN retried_at_ms INTEGER",
    ),
    (
        4,
        "CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            name TEXT NOT NULL,
            roles TEXT NOT NULL,
            secret_sha256 TEXT NOT NULL,
            created_at_ms INTEGER NOT NULL,
            revoked_at_ms INTEGER
        );
        CREATE INDEX api_keys_by_tenant ON api_keys (tenant, created_at_ms);
        CREATE TABLE audit_log (
            id TEXT PRIMARY KEY,
            at_ms INTEGER NOT NULL,
            tenant TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            status INTEGER NOT NULL,
            request_id TEXT
        );
        CREATE INDEX audit_log_by_tenant ON audit_log (tenant, at_ms)",
    ),
    (
        5,
        "CREATE TABLE payloads (
            id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            pipeline TEXT NOT NULL,
            source TEXT NOT NULL,
            received_at_ms INTEGER NOT NULL,
            account_id TEXT,
            currency TEXT,
            payload BLOB NOT NULL
        );
        CREATE INDEX payloads_by_pipeline ON payloads (tenant, pipeline, received_at_ms)",
    ),
    (
        6,
        // Encryption at rest (key id beside each blob; NULL = plaintext from
        // before) and the indexes the retention pruner deletes by.
        "ALTER TABLE payloads ADD COLUMN key_id TEXT;
        ALTER TABLE dead_letters ADD COLUMN key_id TEXT;
        CREATE INDEX payloads_by_time ON payloads (received_at_ms);
        CREATE INDEX dead_letters_by_time ON dead_letters (received_at_ms);
        CREATE INDEX audit_log_by_time ON audit_log (at_ms);
        CREATE INDEX pull_runs_by_time ON pull_runs (started_at_ms)",
    ),
    (
        7,
        // Kept payloads compressed before sealing (NULL = stored as received).
        "ALTER TABLE payloads ADD COLUMN encoding TEXT",
    ),
    (
        8,
        // The plugin registry (`plugin_registry.rs`): components by content
        // hash, the version each plugin (or one pipeline, a canary) should
        // run, and what each live host serves.
        "CREATE TABLE plugin_versions (
        plugin TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        version TEXT NOT NULL,
        component BLOB NOT NULL,
        signed_by TEXT,
        deployed_by TEXT NOT NULL,
        deployed_at_ms INTEGER NOT NULL,
        PRIMARY KEY (plugin, content_hash)
        );
        CREATE TABLE plugin_desired (
        plugin TEXT NOT NULL,
        pipeline TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        previous_hash TEXT,
        updated_by TEXT NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        PRIMARY KEY (plugin, pipeline)
        );
        CREATE TABLE plugin_hosts (
        host TEXT NOT NULL,
        plugin TEXT NOT NULL,
        pipeline TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        version TEXT NOT NULL,
        last_error TEXT,
        seen_at_ms INTEGER NOT NULL,
        PRIMARY KEY (host, plugin, pipeline)
        )",
    ),
];

/// `payloads.encoding` of an LZ4 block with its length in front.
const LZ4: &str = "lz4";

/// Kept payloads one page of a replay holds (bounds its memory to this many
/// request bodies).
pub const PAYLOAD_PAGE: u32 = 16;

/// An accepted payload kept for replay.
#[derive(Clone, Debug)]
pub struct KeptPayload {
    pub id: String,
    pub source: String,
    pub received_at_ms: i64,
    pub account_id: Option<String>,
    pub currency: Option<String>,
    pub payload: Vec<u8>,
}

/// An API key as stored (never its secret).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub roles: Vec<String>,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    #[serde(skip)]
    pub secret_sha256: String,
}

/// One admin action.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: String,
    pub at_ms: i64,
    pub tenant: String,
    /// Token subject or `key:<id>` or `cli`.
    pub actor: String,
    /// E.g. `POST /v1/plugins/{name}/reload`.
    pub action: String,
    /// The concrete path or object acted on.
    pub target: String,
    /// HTTP status of the result (0 for CLI actions that succeeded).
    pub status: i64,
    pub request_id: Option<String>,
}

/// A payload to keep.
#[derive(Clone, Debug)]
pub struct NewDeadLetter<'a> {
    pub tenant: &'a str,
    pub pipeline: &'a str,
    /// `report` or `webhook`.
    pub source: &'a str,
    pub code: &'a str,
    pub message: &'a str,
    pub payload: &'a [u8],
    /// Context the request supplied, kept so a retry parses the same way.
    pub account_id: Option<&'a str>,
    pub currency: Option<&'a str>,
}

/// A kept payload with what a retry needs.
#[derive(Clone, Debug)]
pub struct StoredDeadLetter {
    pub pipeline: String,
    pub source: String,
    pub received_at_ms: i64,
    pub code: String,
    pub message: String,
    pub payload: Vec<u8>,
    pub account_id: Option<String>,
    pub currency: Option<String>,
    pub retried_at_ms: Option<i64>,
}

/// A kept payload, as listed (without its bytes).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: String,
    pub pipeline: String,
    pub source: String,
    pub received_at_ms: i64,
    pub code: String,
    pub message: String,
    pub size: i64,
    /// When the payload was retried, if it was.
    pub retried_at_ms: Option<i64>,
}

/// One pull of one account, as recorded.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PullRun {
    pub id: String,
    pub pipeline: String,
    pub account: String,
    pub since: String,
    pub until: String,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    /// `ok` or `failed`.
    pub status: String,
    pub pages: i64,
    pub rows: i64,
    /// Requests retried after 429/5xx or a transport error.
    pub retries: i64,
    pub error: Option<String>,
}

/// An `api_keys` row (id, tenant, name, roles, secret_sha256, created, revoked).
macro_rules! api_key_row {
    ($r:expr) => {{
        let r = $r;
        let roles: String = r.get(3);
        ApiKeyRecord {
            id: r.get(0),
            tenant: r.get(1),
            name: r.get(2),
            roles: roles
                .split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            secret_sha256: r.get(4),
            created_at_ms: r.get(5),
            revoked_at_ms: r.get(6),
        }
    }};
}

/// Handle to the metadata database.
#[derive(Clone)]
pub struct Metadata {
    pool: Pool,
    /// Group-commits kept payloads.
    payloads: crate::group_commit::GroupCommit<payloads::KeptRow, ()>,
    /// Seals kept payloads and dead letters (none: stored as they are).
    sealer: Option<Sealer>,
}

/// Where a replay's paging through kept payloads stands.
#[derive(Clone, Debug)]
pub struct PayloadCursor {
    pub tenant: String,
    pub pipeline: String,
    /// Received in `[from_ms, to_ms)`.
    pub from_ms: i64,
    pub to_ms: i64,
    /// The last payload returned (received at, id); `None` before the first page.
    after: Option<(i64, String)>,
    done: bool,
}

impl PayloadCursor {
    /// Page through the kept payloads of a pipeline received in `[from_ms, to_ms)`.
    pub fn new(tenant: &str, pipeline: &str, from_ms: i64, to_ms: i64) -> PayloadCursor {
        PayloadCursor {
            tenant: tenant.to_owned(),
            pipeline: pipeline.to_owned(),
            from_ms,
            to_ms,
            after: None,
            done: false,
        }
    }
}

impl Metadata {
    /// Connect to `url` (`sqlite://PATH` or `postgres://…`) and migrate.
    pub async fn open(url: &MetadataUrl) -> Result<Metadata, MetadataError> {
        let pool = match url {
            MetadataUrl::Sqlite(url) => Pool::Sqlite(crate::sqlite::open(url).await?),
            MetadataUrl::Postgres(url) => Pool::Postgres(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(std::time::Duration::from_secs(5))
                    .connect(url)
                    .await?,
            ),
        };
        let metadata = Metadata {
            payloads: payloads::writer(pool.clone()),
            pool,
            sealer: None,
        };
        metadata.migrate().await?;
        Ok(metadata)
    }

    /// Seal kept payloads and dead letters with `sealer` (and open them).
    pub fn with_sealer(mut self, sealer: Sealer) -> Metadata {
        self.sealer = Some(sealer);
        self
    }

    /// `payload` as stored: sealed as `context` (blob, key id) with a
    /// sealer, else as it is.
    fn seal(
        &self,
        payload: &[u8],
        context: Context<'_>,
    ) -> Result<(Vec<u8>, Option<String>), MetadataError> {
        Ok(match &self.sealer {
            Some(sealer) => {
                let sealed = sealer.seal(payload, context)?;
                (sealed.blob, Some(sealed.key_id))
            }
            None => (payload.to_vec(), None),
        })
    }

    /// A stored blob's plaintext.
    fn open_blob(
        &self,
        key_id: Option<String>,
        blob: Vec<u8>,
        context: Context<'_>,
    ) -> Result<Vec<u8>, MetadataError> {
        match (&self.sealer, key_id) {
            (_, None) => Ok(blob),
            (Some(sealer), Some(id)) => Ok(sealer.open(Some(&id), blob, context)?),
            (None, Some(id)) => Err(SealError::UnknownKey(id).into()),
        }
    }

    /// The dialect of the connected database.
    pub fn dialect(&self) -> Dialect {
        match self.pool {
            Pool::Sqlite(_) => Dialect::Sqlite,
            Pool::Postgres(_) => Dialect::Postgres,
        }
    }

    async fn migrate(&self) -> Result<(), MetadataError> {
        let dialect = self.dialect();
        on_pool!(&self.pool, pool => {
            sqlx::query("CREATE TABLE IF NOT EXISTS adpipe_migrations (version BIGINT PRIMARY KEY)")
                .execute(pool)
                .await?;
            for (version, sql) in MIGRATIONS {
                let mut tx = pool.begin().await?;
                if dialect == Dialect::Postgres {
                    // Several processes may start at once: one migrates, the others wait.
                    sqlx::query("LOCK TABLE adpipe_migrations IN EXCLUSIVE MODE")
                        .execute(&mut *tx)
                        .await?;
                }
                let done = sqlx::query("SELECT 1 FROM adpipe_migrations WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                if !done {
                    for statement in sql.split(';').filter(|s| !s.trim().is_empty()) {
                        sqlx::query(&dialect.ddl(statement)).execute(&mut *tx).await?;
                    }
                    sqlx::query("INSERT INTO adpipe_migrations (version) VALUES ($1)")
                        .bind(version)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }
            Ok(())
        })
    }

    /// Keep a payload; returns its id.
    pub async fn add_dead_letter(
        &self,
        letter: NewDeadLetter<'_>,
    ) -> Result<String, MetadataError> {
        let (blob, key_id) = self.seal(
            letter.payload,
            Context::DeadLetter {
                tenant: letter.tenant,
            },
        )?;
        on_pool!(&self.pool, pool => {
            let id = uuid::Uuid::new_v4().to_string();
            sqlx::query(
                "INSERT INTO dead_letters (id, tenant, pipeline, source, received_at_ms, code, message, payload,
                    account_id, currency, key_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&id)
            .bind(letter.tenant)
            .bind(letter.pipeline)
            .bind(letter.source)
            .bind(chrono::Utc::now().timestamp_millis())
            .bind(letter.code)
            .bind(letter.message)
            .bind(&blob)
            .bind(letter.account_id)
            .bind(letter.currency)
            .bind(&key_id)
            .execute(pool)
            .await?;
            Ok(id)
        })
    }

    /// The newest dead letters of `tenant`.
    pub async fn dead_letters(
        &self,
        tenant: &str,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, MetadataError> {
        on_pool!(&self.pool, pool => {
            let rows = sqlx::query(
                "SELECT id, pipeline, source, received_at_ms, code, message,
                    CAST(CASE WHEN key_id IS NULL THEN LENGTH(payload) ELSE LENGTH(payload) - $3 END AS BIGINT), retried_at_ms
                 FROM dead_letters WHERE tenant = $1 ORDER BY received_at_ms DESC, id LIMIT $2",
            )
            .bind(tenant)
            .bind(i64::from(limit))
            .bind(crate::seal::OVERHEAD as i64)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .iter()
                .map(|r| DeadLetter {
                    id: r.get(0),
                    pipeline: r.get(1),
                    source: r.get(2),
                    received_at_ms: r.get(3),
                    code: r.get(4),
                    message: r.get(5),
                    size: r.get(6),
                    retried_at_ms: r.get(7),
                })
                .collect())
        })
    }

    /// A dead letter of `tenant`, with its payload.
    pub async fn dead_letter(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<StoredDeadLetter>, MetadataError> {
        let row = on_pool!(&self.pool, pool => {
            sqlx::query(
                "SELECT pipeline, source, payload, account_id, currency, retried_at_ms, key_id,
                    received_at_ms, code, message FROM dead_letters
                 WHERE tenant = $1 AND id = $2",
            )
            .bind(tenant)
            .bind(id)
            .fetch_optional(pool)
            .await?
            .map(|r| {
                let key_id: Option<String> = r.get(6);
                (key_id, StoredDeadLetter {
                    pipeline: r.get(0),
                    source: r.get(1),
                    payload: r.get(2),
                    account_id: r.get(3),
                    currency: r.get(4),
                    retried_at_ms: r.get(5),
                    received_at_ms: r.get(7),
                    code: r.get(8),
                    message: r.get(9),
                })
            })
        });
        let Some((key_id, mut letter)) = row else {
            return Ok(None);
        };
        letter.payload = self.open_blob(
            key_id,
            std::mem::take(&mut letter.payload),
            Context::DeadLetter { tenant },
        )?;
        Ok(Some(letter))
    }

    /// Mark a dead letter retried (once); false if it already was.
    pub async fn mark_retried(&self, tenant: &str, id: &str) -> Result<bool, MetadataError> {
        on_pool!(&self.pool, pool => {
            let done = sqlx::query(
                "UPDATE dead_letters SET retried_at_ms = $1 WHERE tenant = $2 AND id = $3 AND retried_at_ms IS NULL",
            )
            .bind(chrono::Utc::now().timestamp_millis())
            .bind(tenant)
            .bind(id)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Record a pull run of `tenant`.
    pub async fn add_pull_run(&self, tenant: &str, run: &PullRun) -> Result<(), MetadataError> {
        on_pool!(&self.pool, pool => {
            sqlx::query(
                "INSERT INTO pull_runs (id, tenant, pipeline, account, since, until, started_at_ms, finished_at_ms,
                    status, pages, rows, retries, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(&run.id)
            .bind(tenant)
            .bind(&run.pipeline)
            .bind(&run.account)
            .bind(&run.since)
            .bind(&run.until)
            .bind(run.started_at_ms)
            .bind(run.finished_at_ms)
            .bind(&run.status)
            .bind(run.pages)
            .bind(run.rows)
            .bind(run.retries)
            .bind(&run.error)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The newest pull runs of a pipeline of `tenant`.
    pub async fn pull_runs(
        &self,
        tenant: &str,
        pipeline: &str,
        limit: u32,
    ) -> Result<Vec<PullRun>, MetadataError> {
        on_pool!(&self.pool, pool => {
            let rows = sqlx::query(
                "SELECT id, pipeline, account, since, until, started_at_ms, finished_at_ms, status, pages, rows, retries, error
                 FROM pull_runs WHERE tenant = $1 AND pipeline = $2 ORDER BY started_at_ms DESC, id LIMIT $3",
            )
            .bind(tenant)
            .bind(pipeline)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            Ok(rows
                .iter()
                .map(|r| PullRun {
                    id: r.get(0),
                    pipeline: r.get(1),
                    account: r.get(2),
                    since: r.get(3),
                    until: r.get(4),
                    started_at_ms: r.get(5),
                    finished_at_ms: r.get(6),
                    status: r.get(7),
                    pages: r.get(8),
                    rows: r.get(9),
                    retries: r.get(10),
                    error: r.get(11),
                })
                .collect())
        })
    }

    /// Store a new API key (its secret only as a SHA-256 digest).
    pub async fn add_api_key(&self, key: &ApiKeyRecord) -> Result<(), MetadataError> {
        on_pool!(&self.pool, pool => {
            sqlx::query(
                "INSERT INTO api_keys (id, tenant, name, roles, secret_sha256, created_at_ms, revoked_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, NULL)",
            )
            .bind(&key.id)
            .bind(&key.tenant)
            .bind(&key.name)
            .bind(key.roles.join(","))
            .bind(&key.secret_sha256)
            .bind(key.created_at_ms)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// A key by id (any tenant: the id is how a presented key is found).
    pub async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, MetadataError> {
        on_pool!(&self.pool, pool => {
            Ok(sqlx::query(
                "SELECT id, tenant, name, roles, secret_sha256, created_at_ms, revoked_at_ms
                 FROM api_keys WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(|r| api_key_row!(r)))
        })
    }

    /// The keys of `tenant` (revoked ones too), newest first.
    pub async fn api_keys(&self, tenant: &str) -> Result<Vec<ApiKeyRecord>, MetadataError> {
        on_pool!(&self.pool, pool => {
            Ok(sqlx::query(
                "SELECT id, tenant, name, roles, secret_sha256, created_at_ms, revoked_at_ms
                 FROM api_keys WHERE tenant = $1 ORDER BY created_at_ms DESC, id",
            )
            .bind(tenant)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| api_key_row!(r))
            .collect())
        })
    }

    /// Revoke a key of `tenant`; false if there is no such live key.
    pub async fn revoke_api_key(&self, tenant: &str, id: &str) -> Result<bool, MetadataError> {
        on_pool!(&self.pool, pool => {
            let done = sqlx::query(
                "UPDATE api_keys SET revoked_at_ms = $1 WHERE tenant = $2 AND id = $3 AND revoked_at_ms IS NULL",
            )
            .bind(chrono::Utc::now().timestamp_millis())
            .bind(tenant)
            .bind(id)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Keep an accepted payload so it can be replayed through a newer
    /// adapter; returns its id once it is committed (together with whatever
    /// other payloads were waiting: see [`payloads`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn keep_payload(
        &self,
        tenant: &str,
        pipeline: &str,
        source: &str,
        account_id: Option<&str>,
        currency: Option<&str>,
        payload: &[u8],
    ) -> Result<String, MetadataError> {
        let row = self.kept_row(tenant, pipeline, source, account_id, currency, payload)?;
        let id = row.id.clone();
        self.payloads.submit(row).await?;
        Ok(id)
    }

    /// An accepted payload made ready to be kept (compressed, sealed, given
    /// an id) and encoded to travel with its rows on a bus that commits both
    /// at once ([`crate::bus::Bus::carries_payloads`]); the consumer keeps it
    /// with [`Self::keep_carried`] before it applies the rows.
    pub fn carry_payload(
        &self,
        tenant: &str,
        pipeline: &str,
        source: &str,
        account_id: Option<&str>,
        currency: Option<&str>,
        payload: &[u8],
    ) -> Result<Vec<u8>, MetadataError> {
        let row = self.kept_row(tenant, pipeline, source, account_id, currency, payload)?;
        Ok(payloads::carried(row))
    }

    /// Keep payloads that came with their rows ([`Self::carry_payload`]),
    /// in one statement; one already kept (a batch delivered again after a
    /// crash) is left as it is. One that does not decode is an error.
    pub async fn keep_carried(&self, carried: &[&[u8]]) -> Result<(), MetadataError> {
        let rows = carried
            .iter()
            .map(|bytes| payloads::from_carried(bytes))
            .collect::<Result<Vec<_>, _>>()?;
        for chunk in rows.chunks(payloads::GROUP_COMMIT_MAX) {
            payloads::insert(&self.pool, chunk, payloads::Existing::Keep).await?;
        }
        Ok(())
    }

    /// Compressed, then sealed (sealed bytes do not compress), with a new id.
    fn kept_row(
        &self,
        tenant: &str,
        pipeline: &str,
        source: &str,
        account_id: Option<&str>,
        currency: Option<&str>,
        payload: &[u8],
    ) -> Result<payloads::KeptRow, MetadataError> {
        let compressed = lz4_flex::compress_prepend_size(payload);
        let (blob, key_id) = self.seal(&compressed, Context::Payload { tenant })?;
        Ok(payloads::KeptRow {
            id: uuid::Uuid::new_v4().to_string(),
            tenant: tenant.to_owned(),
            pipeline: pipeline.to_owned(),
            source: source.to_owned(),
            received_at_ms: chrono::Utc::now().timestamp_millis(),
            account_id: account_id.map(str::to_owned),
            currency: currency.map(str::to_owned),
            blob,
            key_id,
            encoding: Some(LZ4),
        })
    }

    /// Drop a kept payload (one kept for a request that was then refused).
    pub async fn forget_payload(&self, id: &str) -> Result<(), MetadataError> {
        on_pool!(&self.pool, pool => {
            sqlx::query("DELETE FROM payloads WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// The next page (at most `limit`) of the kept payloads `cursor` walks,
    /// oldest first, opened; empty once every one was returned.
    pub async fn next_kept_payloads(
        &self,
        cursor: &mut PayloadCursor,
        limit: u32,
    ) -> Result<Vec<KeptPayload>, MetadataError> {
        if cursor.done {
            return Ok(Vec::new());
        }
        let (after_ms, after_id) = cursor
            .after
            .clone()
            .unwrap_or((cursor.from_ms - 1, String::new()));
        let rows: Vec<(KeptPayload, Option<String>, Option<String>)> = on_pool!(&self.pool, pool => {
            sqlx::query(
                "SELECT id, source, received_at_ms, account_id, currency, payload, key_id, encoding FROM payloads
                 WHERE tenant = $1 AND pipeline = $2 AND received_at_ms >= $3 AND received_at_ms < $4
                   AND (received_at_ms > $5 OR (received_at_ms = $5 AND id > $6))
                 ORDER BY received_at_ms, id LIMIT $7",
            )
            .bind(&cursor.tenant)
            .bind(&cursor.pipeline)
            .bind(cursor.from_ms)
            .bind(cursor.to_ms)
            .bind(after_ms)
            .bind(&after_id)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| {
                (
                    KeptPayload {
                        id: r.get(0),
                        source: r.get(1),
                        received_at_ms: r.get(2),
                        account_id: r.get(3),
                        currency: r.get(4),
                        payload: r.get(5),
                    },
                    r.get(6),
                    r.get(7),
                )
            })
            .collect()
        });
        cursor.done = rows.len() < limit as usize;
        if let Some((last, _, _)) = rows.last() {
            cursor.after = Some((last.received_at_ms, last.id.clone()));
        }
        let tenant = cursor.tenant.clone();
        rows.into_iter()
            .map(|(mut kept, key_id, encoding)| {
                let stored = self.open_blob(
                    key_id,
                    std::mem::take(&mut kept.payload),
                    Context::Payload { tenant: &tenant },
                )?;
                kept.payload = match encoding.as_deref() {
                    None => stored,
                    Some(LZ4) => lz4_flex::decompress_size_prepended(&stored)
                        .map_err(|e| MetadataError::Encoding(e.to_string()))?,
                    Some(other) => {
                        return Err(MetadataError::Encoding(format!(
                            "unknown encoding `{other}`"
                        )))
                    }
                };
                Ok(kept)
            })
            .collect()
    }

    /// Record an admin action.
    pub async fn audit(&self, entry: &AuditEntry) -> Result<(), MetadataError> {
        on_pool!(&self.pool, pool => {
            sqlx::query(
                "INSERT INTO audit_log (id, at_ms, tenant, actor, action, target, status, request_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&entry.id)
            .bind(entry.at_ms)
            .bind(&entry.tenant)
            .bind(&entry.actor)
            .bind(&entry.action)
            .bind(&entry.target)
            .bind(entry.status)
            .bind(&entry.request_id)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The newest admin actions of `tenant`.
    pub async fn audit_log(
        &self,
        tenant: &str,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, MetadataError> {
        on_pool!(&self.pool, pool => {
            Ok(sqlx::query(
                "SELECT id, at_ms, tenant, actor, action, target, status, request_id
                 FROM audit_log WHERE tenant = $1 ORDER BY at_ms DESC, id LIMIT $2",
            )
            .bind(tenant)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| AuditEntry {
                id: r.get(0),
                at_ms: r.get(1),
                tenant: r.get(2),
                actor: r.get(3),
                action: r.get(4),
                target: r.get(5),
                status: r.get(6),
                request_id: r.get(7),
            })
            .collect())
        })
    }

    /// The database answers.
    pub async fn ping(&self) -> Result<(), MetadataError> {
        on_pool!(&self.pool, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
            Ok(())
        })
    }
}
