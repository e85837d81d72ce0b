//! The one way adpipe opens its embedded SQLite files (bus, store, metadata):
//! WAL journal, `synchronous=FULL` (a commit is on disk when it returns),
//! a busy timeout, a small pool.

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

async fn connect(options: SqliteConnectOptions) -> Result<SqlitePool, sqlx::Error> {
    let options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10));
    SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
}
