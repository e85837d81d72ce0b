//! The one way adpipe opens its embedded SQLite files (bus, store, metadata):
//! WAL journal, `synchronous=FULL` (a commit is on disk when it returns),
//! a busy timeout, a small pool, a WAL cut back to 64 MB after checkpoints. A database file adpipe creates is mode 0600
//! (SQLite gives its `-wal` and `-shm` files the same mode).

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// Open (creating if missing) the database at `url` (`sqlite://PATH`).
pub async fn open(url: &str) -> Result<SqlitePool, sqlx::Error> {
    connect(SqliteConnectOptions::from_str(url)?).await
}

/// Open (creating if missing) the database file at `path`.
pub async fn open_file(path: &std::path::Path) -> Result<SqlitePool, sqlx::Error> {
    connect(SqliteConnectOptions::new().filename(path)).await
}

/// Open the database file at `path` for large write transactions (the
/// embedded store): an 8 MB page cache per connection instead of SQLite's
/// 2 MB, which a 5,000-row batch with its indexes and rollups overflowed,
/// spilling pages to the WAL mid-transaction and reading them back.
pub async fn open_file_for_bulk_writes(path: &std::path::Path) -> Result<SqlitePool, sqlx::Error> {
    connect(
        SqliteConnectOptions::new()
            .filename(path)
            .pragma("cache_size", "-8192"),
    )
    .await
}

/// A single writer connection to the existing database at `path` (rusqlite,
/// used in the calling thread), with the same settings as the pool's
/// connections: WAL, `synchronous=FULL`, the busy timeout, the WAL size limit,
/// in-memory statement journals and the bulk writer's 8 MB page cache.
pub fn open_writer(path: &std::path::Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", -8192)?;
    // Cached statements of every kind the store's write path prepares.
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// How long a connection waits for another's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A WAL that grew under a burst is cut back to this after a checkpoint.
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

async fn connect(options: SqliteConnectOptions) -> Result<SqlitePool, sqlx::Error> {
    create_private(options.get_filename())?;
    let options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .pragma("journal_size_limit", JOURNAL_SIZE_LIMIT.to_string())
        // Statement journals (multi-row upserts, triggers) in memory, not temp files.
        .pragma("temp_store", "MEMORY")
        .busy_timeout(BUSY_TIMEOUT);
    SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
}

/// Create the empty database file at `path` readable by the owner only, unless
/// it exists (SQLite would otherwise create it with the umask's mode).
fn create_private(path: &std::path::Path) -> std::io::Result<()> {
    if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" || path.exists() {
        return Ok(());
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[cfg(unix)]
    #[tokio::test]
    async fn database_files_are_private_to_the_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.db");
        let pool = super::open_file(&path).await.expect("open");
        sqlx::query("CREATE TABLE t (v TEXT)")
            .execute(&pool)
            .await
            .expect("write");
        for entry in std::fs::read_dir(dir.path()).expect("list") {
            let entry = entry.expect("entry");
            let mode = entry.metadata().expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{:?}", entry.file_name());
        }
    }
}
