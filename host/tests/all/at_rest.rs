//! Data at rest: retention of kept payloads, dead letters, audit rows and pull
//! runs (on SQLite and PostgreSQL, and the background pruner of a real
//! `adpipe serve`), replay paging through kept payloads and refusing ranges
//! longer than `api.max_range_days`, and encryption of kept payloads and dead
//! letters (the raw files of a real embedded `adpipe serve` hold no payload
//! plaintext; the API and replay still read them; rotated keys still open
//! old blobs; rows from before encryption stay readable).

use std::path::{Path, PathBuf};
use std::time::Duration;

use adpipe::auth::Role;
use adpipe::config::{MetadataUrl, RetentionConfig};
use adpipe::metadata::retention::Kind;
use adpipe::metadata::{AuditEntry, Metadata, NewDeadLetter, PullRun};
use adpipe::seal::{key_id, Sealer};
use serde_json::{json, Value};

use crate::api::{meta_row, page};
use crate::common::*;
use crate::engines::TempDatabase;

const DAY_MS: i64 = 86_400_000;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Run one statement on the metadata database behind `url`.
async fn execute(url: &MetadataUrl, sql: &str) {
    match url {
        MetadataUrl::Sqlite(u) => {
            let pool = sqlx::SqlitePool::connect(u).await.expect("sqlite");
            sqlx::query(sql).execute(&pool).await.expect(sql);
        }
        MetadataUrl::Postgres(u) => {
            let pool = sqlx::PgPool::connect(u).await.expect("postgres");
            sqlx::query(sql).execute(&pool).await.expect(sql);
        }
    }
}

/// The first column of every row of `sql`, as text, sorted.
async fn texts(url: &MetadataUrl, sql: &str) -> Vec<String> {
    let mut out: Vec<String> = match url {
        MetadataUrl::Sqlite(u) => {
            let pool = sqlx::SqlitePool::connect(u).await.expect("sqlite");
            sqlx::query_scalar(sql).fetch_all(&pool).await.expect(sql)
        }
        MetadataUrl::Postgres(u) => {
            let pool = sqlx::PgPool::connect(u).await.expect("postgres");
            sqlx::query_scalar(sql).fetch_all(&pool).await.expect(sql)
        }
    };
    out.sort();
    out
}

fn dead_letter<'a>(source: &'a str, payload: &'a [u8]) -> NewDeadLetter<'a> {
    NewDeadLetter {
        tenant: "demo",
        pipeline: "meta",
        source,
        code: "unparseable",
        message: "test",
        payload,
        account_id: None,
        currency: None,
    }
}

fn pull_run(id: &str, started_at_ms: i64) -> PullRun {
    PullRun {
        id: id.into(),
        pipeline: "meta".into(),
        account: "1".into(),
        since: "2026-11-01".into(),
        until: "2026-11-02".into(),
        started_at_ms,
        finished_at_ms: started_at_ms + 1,
        status: "ok".into(),
        pages: 1,
        rows: 1,
        retries: 0,
        error: None,
    }
}

fn audit(id: &str, at_ms: i64) -> AuditEntry {
    AuditEntry {
        id: id.into(),
        at_ms,
        tenant: "demo".into(),
        actor: "cli".into(),
        action: "test".into(),
        target: "x".into(),
        status: 0,
        request_id: None,
    }
}

/// For every kind, a row one day past its retention (`old`) and one a day
/// short of it (`new`), dated through the database (payloads and dead letters
/// are dated by the server's clock when written).
async fn seed_old_and_new(metadata: &Metadata, url: &MetadataUrl, retention: &RetentionConfig) {
    let now = now_ms();
    let at = |kind: Kind, older: bool| {
        let days = i64::from(kind.days(retention));
        now - (days + if older { 1 } else { -1 }) * DAY_MS
    };
    for (source, older) in [("old", true), ("new", false)] {
        metadata
            .keep_payload("demo", "meta", source, None, None, b"payload")
            .await
            .expect("keep");
        execute(
            url,
            &format!(
                "UPDATE payloads SET received_at_ms = {} WHERE source = '{source}'",
                at(Kind::Payloads, older)
            ),
        )
        .await;
        metadata
            .add_dead_letter(dead_letter(source, b"letter"))
            .await
            .expect("dead letter");
        execute(
            url,
            &format!(
                "UPDATE dead_letters SET received_at_ms = {} WHERE source = '{source}'",
                at(Kind::DeadLetters, older)
            ),
        )
        .await;
        metadata
            .audit(&audit(source, at(Kind::Audit, older)))
            .await
            .expect("audit");
        metadata
            .add_pull_run("demo", &pull_run(source, at(Kind::PullRuns, older)))
            .await
            .expect("pull run");
    }
}

/// Which rows of each kind are left.
async fn left(url: &MetadataUrl) -> Vec<Vec<String>> {
    vec![
        texts(url, "SELECT source FROM payloads").await,
        texts(url, "SELECT source FROM dead_letters").await,
        texts(url, "SELECT id FROM audit_log WHERE action = 'test'").await,
        texts(url, "SELECT id FROM pull_runs").await,
    ]
}

async fn retention_prunes_exactly_the_old_rows(url: MetadataUrl) {
    let metadata = Metadata::open(&url)
        .await
        .expect("open")
        .with_sealer(Sealer::from_keys([5; 32], &[]));
    let retention = RetentionConfig::default();
    seed_old_and_new(&metadata, &url, &retention).await;
    let both = vec!["new".to_owned(), "old".to_owned()];
    assert_eq!(left(&url).await, vec![both.clone(); 4]);
    let pruned = metadata.prune(&retention, now_ms()).await.expect("prune");
    assert_eq!(
        pruned,
        vec![
            (Kind::Payloads, 1),
            (Kind::DeadLetters, 1),
            (Kind::Audit, 1),
            (Kind::PullRuns, 1)
        ]
    );
    assert_eq!(left(&url).await, vec![vec!["new".to_owned()]; 4]);
    // Nothing more to delete; a retention of 0 days keeps rows forever.
    let forever = RetentionConfig {
        payloads_days: 0,
        dead_letters_days: 0,
        audit_days: 0,
        pull_runs_days: 0,
        ..RetentionConfig::default()
    };
    let far_future = now_ms() + 10_000 * DAY_MS;
    assert_eq!(
        metadata.prune(&forever, far_future).await.expect("prune"),
        vec![]
    );
    assert_eq!(left(&url).await, vec![vec!["new".to_owned()]; 4]);
    // The kept rows are still read through the API (opened from their seal).
    let mut cursor = adpipe::metadata::PayloadCursor::new("demo", "meta", 0, i64::MAX);
    let kept = metadata
        .next_kept_payloads(&mut cursor, 10)
        .await
        .expect("read");
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].payload, b"payload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_old_rows_and_keeps_newer_ones_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = MetadataUrl::Sqlite(format!(
        "sqlite://{}",
        dir.path().join("metadata.db").display()
    ));
    retention_prunes_exactly_the_old_rows(url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_old_rows_and_keeps_newer_ones_on_postgres() {
    if !engines_available(&[Engine::Postgres]) {
        return;
    }
    let database = TempDatabase::create().await;
    let url: MetadataUrl = database.url.parse().expect("url");
    retention_prunes_exactly_the_old_rows(url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_pages_through_every_kept_payload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = MetadataUrl::Sqlite(format!(
        "sqlite://{}",
        dir.path().join("metadata.db").display()
    ));
    let metadata = Metadata::open(&url)
        .await
        .expect("open")
        .with_sealer(Sealer::from_keys([5; 32], &[]));
    let n = adpipe::metadata::PAYLOAD_PAGE as usize * 2 + 3;
    for i in 0..n {
        metadata
            .keep_payload(
                "demo",
                "meta",
                "report",
                None,
                None,
                format!("p{i}").as_bytes(),
            )
            .await
            .expect("keep");
    }
    // Another pipeline's and another tenant's payloads are not walked.
    metadata
        .keep_payload("demo", "other", "report", None, None, b"x")
        .await
        .expect("keep");
    metadata
        .keep_payload("acme", "meta", "report", None, None, b"y")
        .await
        .expect("keep");
    let mut cursor = adpipe::metadata::PayloadCursor::new("demo", "meta", 0, i64::MAX);
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = metadata
            .next_kept_payloads(&mut cursor, adpipe::metadata::PAYLOAD_PAGE)
            .await
            .expect("page");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= adpipe::metadata::PAYLOAD_PAGE as usize);
        pages += 1;
        seen.extend(
            page.into_iter()
                .map(|p| String::from_utf8(p.payload).expect("utf-8")),
        );
    }
    assert_eq!(pages, 3);
    let mut want: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
    seen.sort();
    want.sort();
    assert_eq!(seen, want, "every payload once");
}

/// A payload carried on the bus with its rows is kept, sealed, by the
/// consumer: once however often the batch is delivered, with what was
/// received; a copy that does not decode is refused and keeps nothing.
async fn carried_payloads_are_kept_once(url: MetadataUrl) {
    let metadata = Metadata::open(&url)
        .await
        .expect("open")
        .with_sealer(Sealer::from_keys([6; 32], &[]));
    let first = metadata
        .carry_payload(
            "demo",
            "meta",
            "webhook",
            Some("act_1"),
            Some("EUR"),
            b"delivery one",
        )
        .expect("carry");
    let second = metadata
        .carry_payload("demo", "meta", "report", None, None, b"report two")
        .expect("carry");
    assert!(
        !first.windows(8).any(|w| w == b"delivery"),
        "the carried copy is sealed"
    );
    // A redelivered batch (a crash between keeping and committing) keeps nothing twice.
    metadata
        .keep_carried(&[&first, &second])
        .await
        .expect("keep");
    metadata.keep_carried(&[&first]).await.expect("keep again");
    assert!(matches!(
        metadata
            .keep_carried(&[b"\xff\xff not a carried payload"])
            .await,
        Err(adpipe::metadata::MetadataError::Encoding(_))
    ));
    let mut cursor = adpipe::metadata::PayloadCursor::new("demo", "meta", 0, i64::MAX);
    /// Source, account, currency and bytes of a kept payload.
    type Kept = (String, Option<String>, Option<String>, Vec<u8>);
    let mut kept: Vec<Kept> = metadata
        .next_kept_payloads(&mut cursor, 10)
        .await
        .expect("read")
        .into_iter()
        .map(|p| (p.source, p.account_id, p.currency, p.payload))
        .collect();
    kept.sort();
    assert_eq!(
        kept,
        vec![
            ("report".into(), None, None, b"report two".to_vec()),
            (
                "webhook".into(),
                Some("act_1".into()),
                Some("EUR".into()),
                b"delivery one".to_vec()
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carried_payloads_are_kept_once_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = MetadataUrl::Sqlite(format!(
        "sqlite://{}",
        dir.path().join("metadata.db").display()
    ));
    carried_payloads_are_kept_once(url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carried_payloads_are_kept_once_on_postgres() {
    if !engines_available(&[Engine::Postgres]) {
        return;
    }
    let database = TempDatabase::create().await;
    let url: MetadataUrl = database.url.parse().expect("url");
    carried_payloads_are_kept_once(url).await;
}

/// A `pipelines.toml` for a real embedded `adpipe serve` on `dir/data`, with
/// `extra` appended (e.g. an `[encryption]` section).
fn serve_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("pipelines.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{data}\"\nwatch_plugins = false\n\n\
             [[plugins]]\nname = \"meta\"\npath = \"{plugin}\"\n\n\
             [[pipelines]]\nname = \"meta\"\ntenant = \"demo\"\nadapter = \"meta\"\n\n{extra}",
            data = dir.join("data").display(),
            plugin = plugin_path("meta").display(),
        ),
    )
    .expect("write config");
    path
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

async fn call(
    method: &str,
    url: String,
    token: &str,
    body: Option<String>,
) -> (u16, Value, String) {
    let client = client();
    let mut request = match method {
        "POST" => client.post(url),
        _ => client.get(url),
    }
    .bearer_auth(token);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

fn report(rows: usize) -> String {
    page(
        (0..rows)
            .map(|i| {
                meta_row(
                    "c1",
                    "s1",
                    &format!("a{i}"),
                    "2026-11-01",
                    100,
                    2,
                    "1.50",
                    0,
                )
            })
            .collect(),
    )
}

fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_process_prunes_old_rows_refuses_long_replays_and_reads_rows_from_before_encryption(
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = serve_config(dir.path(), "[api]\nmax_range_days = 31\n");
    // Rows written before this version: plaintext (no key id), some past retention.
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let url = MetadataUrl::Sqlite(format!("sqlite://{}", data.join("metadata.db").display()));
    let legacy = Metadata::open(&url).await.expect("open");
    let retention = RetentionConfig::default();
    seed_old_and_new(&legacy, &url, &retention).await;
    let old_report = report(3);
    legacy
        .keep_payload("demo", "meta", "report", None, None, old_report.as_bytes())
        .await
        .expect("keep");
    let letter = legacy
        .add_dead_letter(dead_letter("webhook", b"{\"legacy\": true}"))
        .await
        .expect("dead letter");
    drop(legacy);

    let server = Server::spawn(&config, &[("ADPIPE_AUTH__JWT_SECRET", JWT_SECRET)], &[]);
    let base = server.base.clone();
    // The pruner runs at start: one row of each kind past its retention.
    let operator = token("demo", &[Role::Operator], 600);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _, metrics) = call("GET", format!("{base}/metrics"), &operator, None).await;
        assert_eq!(status, 200, "{metrics}");
        let want: Vec<String> = ["payloads", "dead_letters", "audit", "pull_runs"]
            .iter()
            .map(|k| format!("adpipe_retention_pruned_rows_total{{kind=\"{k}\"}} 1"))
            .collect();
        if want.iter().all(|w| metrics.contains(w.as_str())) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no pruning counted: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut expected_payloads = vec!["new".to_owned(), "report".to_owned()];
    expected_payloads.sort();
    assert_eq!(
        left(&url).await,
        vec![
            expected_payloads,
            vec!["new".to_owned(), "webhook".to_owned()],
            vec!["new".to_owned()],
            vec!["new".to_owned()],
        ]
    );

    // A plaintext dead letter from before is read as it is.
    let analyst = token("demo", &[Role::Analyst], 600);
    let (status, body, text) = call(
        "GET",
        format!("{base}/v1/dead-letters/{letter}"),
        &analyst,
        None,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(body["payload"], "{\"legacy\": true}");

    // Replay: a range longer than api.max_range_days is refused, by the API
    // and by the CLI; a shorter one replays the plaintext payload from before.
    let admin = token("demo", &[Role::Admin], 600);
    let too_long =
        json!({"pipeline": "meta", "from": "2026-01-01", "to": "2026-02-01"}).to_string();
    let (status, body, text) =
        call("POST", format!("{base}/v1/replay"), &admin, Some(too_long)).await;
    assert_eq!(status, 400, "{text}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("32 days") && message.contains("api.max_range_days (31)"),
        "{text}"
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_adpipe"))
        .args([
            "replay",
            "--pipeline",
            "meta",
            "--from",
            "2025-01-01",
            "--to",
            "2026-01-01",
        ])
        .args(["--url", &base, "--token", &admin, "--config"])
        .arg(&config)
        .env_remove("ADPIPE_JWT_SECRET")
        .output()
        .expect("adpipe replay");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("api.max_range_days"), "{said}");
    let from = (chrono::Utc::now() - chrono::Days::new(30))
        .format("%Y-%m-%d")
        .to_string();
    let fits = json!({"pipeline": "meta", "from": from, "to": today()}).to_string();
    let (status, body, text) = call("POST", format!("{base}/v1/replay"), &admin, Some(fits)).await;
    assert_eq!(status, 200, "{text}");
    // The kept plaintext report (3 rows); the seeded `new` payload is 34 days
    // old, outside the range.
    assert_eq!(
        (&body["payloads"], &body["rows"], &body["failed"]),
        (&json!(1), &json!(3), &json!(0)),
        "{text}"
    );
    drop(server);
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("list") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(path);
                }
            }
        }
    }
    hits
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_process_keeps_no_payload_plaintext_at_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = serve_config(dir.path(), "");
    let server = Server::spawn(&config, &[("ADPIPE_AUTH__JWT_SECRET", JWT_SECRET)], &[]);
    let base = server.base.clone();
    let marker = format!("lead-marker-{}", uuid::Uuid::new_v4().simple());
    let ingest = token("demo", &[Role::Ingest], 600);
    // Kept for replay: a report with the marker where the adapter does not look.
    let mut kept: Value = serde_json::from_str(&report(2)).expect("json");
    kept["note"] = json!(marker);
    let kept = kept.to_string();
    let (status, _, text) = call(
        "POST",
        format!("{base}/v1/pipelines/meta/reports"),
        &ingest,
        Some(kept.clone()),
    )
    .await;
    assert_eq!(status, 202, "{text}");
    // Dead-lettered: unparseable, with the marker.
    let bad = json!({"data": 3, "note": marker}).to_string();
    let (status, body, text) = call(
        "POST",
        format!("{base}/v1/pipelines/meta/reports"),
        &ingest,
        Some(bad.clone()),
    )
    .await;
    assert_eq!(status, 400, "{text}");
    assert!(
        !text.contains(&marker),
        "the reason does not quote the payload: {text}"
    );
    let letter = body["error"]["dead_letter_id"]
        .as_str()
        .expect("kept as a dead letter")
        .to_owned();

    // The API still returns the dead letter's content.
    let analyst = token("demo", &[Role::Analyst], 600);
    let (status, body, text) = call(
        "GET",
        format!("{base}/v1/dead-letters/{letter}"),
        &analyst,
        None,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(body["payload"], json!(bad));
    let (status, body, text) = call("GET", format!("{base}/v1/dead-letters"), &analyst, None).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(body["dead_letters"][0]["size"], json!(bad.len()), "{text}");
    // Another tenant does not see it.
    let other = token("acme", &[Role::Analyst], 600);
    let (status, _, _) = call(
        "GET",
        format!("{base}/v1/dead-letters/{letter}"),
        &other,
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Replay still works on the sealed payload.
    let admin = token("demo", &[Role::Admin], 600);
    let body = json!({"pipeline": "meta", "from": today(), "to": today()}).to_string();
    let (status, body, text) = call("POST", format!("{base}/v1/replay"), &admin, Some(body)).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        (&body["payloads"], &body["rows"], &body["failed"]),
        (&json!(1), &json!(2), &json!(0)),
        "{text}"
    );

    // The raw files: no marker anywhere in the data directory (databases,
    // their WAL and shared-memory files, the bus log), while the payloads
    // are there, sealed under the generated key.
    let data = dir.path().join("data");
    assert_eq!(
        files_containing(&data, marker.as_bytes()),
        Vec::<PathBuf>::new()
    );
    let url = MetadataUrl::Sqlite(format!("sqlite://{}", data.join("metadata.db").display()));
    let key_hex = std::fs::read_to_string(data.join("encryption-key")).expect("generated key");
    let key: [u8; 32] = hex::decode(key_hex.trim())
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    let id = key_id(&key);
    assert_eq!(
        texts(
            &url,
            "SELECT key_id || ':' || CAST(LENGTH(payload) AS TEXT) FROM payloads"
        )
        .await,
        // Compressed (LZ4), then sealed.
        vec![format!(
            "{id}:{}",
            lz4_flex::compress_prepend_size(kept.as_bytes()).len() + adpipe::seal::OVERHEAD
        )]
    );
    assert_eq!(
        texts(&url, "SELECT key_id FROM dead_letters").await,
        vec![id]
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&data), 0o700, "data directory");
        for name in ["encryption-key", "metadata.db", "bus.db"] {
            assert_eq!(mode(&data.join(name)), 0o600, "{name}");
        }
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_sealed_under_an_old_key_opens_after_rotation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key1, key2) = ([0x11u8; 32], [0x22u8; 32]);
    let (hex1, hex2) = (hex::encode(key1), hex::encode(key2));
    let env = [
        ("ADPIPE_AUTH__JWT_SECRET", JWT_SECRET),
        ("ADPIPE_TEST_KEY_1", hex1.as_str()),
        ("ADPIPE_TEST_KEY_2", hex2.as_str()),
    ];
    let ingest = token("demo", &[Role::Ingest], 600);
    let analyst = token("demo", &[Role::Analyst], 600);
    let dead_letter_of = |base: String, body: &'static str| {
        let ingest = ingest.clone();
        async move {
            let (status, answer, text) = call(
                "POST",
                format!("{base}/v1/pipelines/meta/reports"),
                &ingest,
                Some(body.to_owned()),
            )
            .await;
            assert_eq!(status, 400, "{text}");
            answer["error"]["dead_letter_id"]
                .as_str()
                .expect("dead letter")
                .to_owned()
        }
    };
    let read = |base: String, id: String| {
        let analyst = analyst.clone();
        async move {
            call(
                "GET",
                format!("{base}/v1/dead-letters/{id}"),
                &analyst,
                None,
            )
            .await
        }
    };

    // Key 1 current.
    let config = serve_config(
        dir.path(),
        "[encryption]\nkey_env = \"ADPIPE_TEST_KEY_1\"\n",
    );
    let server = Server::spawn(&config, &env, &[]);
    let first = dead_letter_of(server.base.clone(), "{\"data\": \"under key 1\"}").await;
    drop(server);

    // Key 2 current, key 1 kept to open.
    let config = serve_config(
        dir.path(),
        "[encryption]\nkey_env = \"ADPIPE_TEST_KEY_2\"\nprevious_key_envs = [\"ADPIPE_TEST_KEY_1\"]\n",
    );
    let server = Server::spawn(&config, &env, &[]);
    let (status, body, text) = read(server.base.clone(), first.clone()).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(body["payload"], "{\"data\": \"under key 1\"}");
    let second = dead_letter_of(server.base.clone(), "{\"data\": \"under key 2\"}").await;
    drop(server);
    let url = MetadataUrl::Sqlite(format!(
        "sqlite://{}",
        dir.path().join("data/metadata.db").display()
    ));
    let ids = texts(
        &url,
        &format!("SELECT key_id FROM dead_letters WHERE id IN ('{first}', '{second}') ORDER BY id"),
    )
    .await;
    let mut want = vec![key_id(&key1), key_id(&key2)];
    want.sort();
    assert_eq!(ids, want, "each blob names the key that sealed it");

    // Key 2 alone: its blob opens, key 1's does not (it really was sealed).
    let config = serve_config(
        dir.path(),
        "[encryption]\nkey_env = \"ADPIPE_TEST_KEY_2\"\n",
    );
    let server = Server::spawn(&config, &env, &[]);
    let (status, body, text) = read(server.base.clone(), second).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(body["payload"], "{\"data\": \"under key 2\"}");
    let (status, _, text) = read(server.base.clone(), first).await;
    assert_eq!(status, 500, "{text}");
    assert!(
        !dir.path().join("data/encryption-key").exists(),
        "a configured key: none generated"
    );
    drop(server);
}
