//! adpipe on the real shared engines that run on this machine: metadata in
//! PostgreSQL (same migrations and queries as SQLite), rate-limit budgets in
//! Redis shared by two apps. `ADPIPE_TEST_POSTGRES_URL` and
//! `ADPIPE_TEST_REDIS_URL` point elsewhere than 127.0.0.1.

use adpipe::app::App;
use adpipe::auth::Role;
use axum::http::StatusCode;
use serde_json::{json, Value};
use sqlx::Connection as _;

use crate::api::{meta_row, page};
use crate::common::*;

fn postgres_base() -> String {
    Engine::Postgres.url()
}

fn redis_url() -> String {
    Engine::Redis.url()
}

/// A fresh database on the PostgreSQL server; dropped by the guard.
pub(crate) struct TempDatabase {
    name: String,
    pub(crate) url: String,
}

impl TempDatabase {
    pub(crate) async fn create() -> TempDatabase {
        let name = format!("adpipe_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&postgres_base())
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (see TESTING.md)");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        let base = postgres_base();
        let url = format!("{}/{name}", &base[..base.rfind('/').expect("db in url")]);
        TempDatabase { name, url }
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        let (base, name) = (postgres_base(), self.name.clone());
        // Best effort, off the test's runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&base).await.ok()?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_lives_in_postgres() {
    if !engines_available(&[Engine::Postgres]) {
        return;
    }
    let database = TempDatabase::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = meta_config(&dir);
    config.server.watch_plugins = false;
    // Over TLS: the URL asks for it (the server has ssl = on).
    config.metadata.url = Some(
        format!("{}?sslmode=require", database.url)
            .parse()
            .expect("url"),
    );
    let app = App::start(config.clone())
        .await
        .expect("start on PostgreSQL");

    // A rejected payload, an API key and an admin action, all through the API.
    let ingest = token("demo", &[Role::Ingest], 60);
    let bad = send(
        &app,
        post("/v1/pipelines/meta/reports", Some(&ingest), "{\"data\": 7}"),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    let letter = bad.json["error"]["dead_letter_id"]
        .as_str()
        .expect("kept")
        .to_owned();
    let admin = token("demo", &[Role::Admin], 60);
    let made = send(
        &app,
        post(
            "/v1/keys",
            Some(&admin),
            json!({"name": "pg", "roles": ["viewer"]}).to_string(),
        ),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let key = made.json["key"].as_str().expect("key").to_owned();
    assert_eq!(
        send(&app, get("/v1/whoami", Some(&key))).await.status,
        StatusCode::OK
    );
    let letters = send(&app, get("/v1/dead-letters", Some(&admin))).await;
    assert_eq!(letters.json["dead_letters"][0]["id"], letter.as_str());
    assert_eq!(letters.json["dead_letters"][0]["size"], 11);
    let good = page(vec![meta_row(
        "c1",
        "s1",
        "a1",
        "2026-11-01",
        10,
        1,
        "1.00",
        0,
    )]);
    let retried = send(
        &app,
        post(
            &format!("/v1/dead-letters/{letter}/retry"),
            Some(&admin),
            "",
        ),
    )
    .await;
    // The kept payload is still unparseable: the retry is refused and explained.
    assert_eq!(retried.status, StatusCode::BAD_REQUEST, "{}", retried.text);
    assert_eq!(
        send(
            &app,
            post("/v1/pipelines/meta/reports", Some(&ingest), good)
        )
        .await
        .status,
        StatusCode::ACCEPTED
    );

    // The rows really are in PostgreSQL. The accepted payload's kept copy
    // travels with its rows on the embedded bus: it is in metadata once the
    // consumer has applied them.
    assert!(
        app.bus
            .settled(&app.store, std::time::Duration::from_secs(10))
            .await
    );
    let mut pg = sqlx::PgConnection::connect(&database.url)
        .await
        .expect("connect");
    let count = |table: &'static str| format!("SELECT COUNT(*) FROM {table} WHERE tenant = 'demo'");
    let mut counts = vec![];
    for table in ["dead_letters", "api_keys", "audit_log", "payloads"] {
        let n: i64 = sqlx::query_scalar(&count(table))
            .fetch_one(&mut pg)
            .await
            .expect(table);
        counts.push(n);
    }
    // Two dead letters (the original and its failed retry), one key, two
    // audited actions, one accepted payload kept for replay.
    assert_eq!(counts, vec![2, 1, 2, 1]);
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM adpipe_migrations ORDER BY version")
            .fetch_all(&mut pg)
            .await
            .expect("migrations");
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6, 7, 8]);

    // adpipe's own connections to this database are encrypted.
    let encrypted: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.datname = $1 AND s.ssl AND a.pid <> pg_backend_pid()",
    )
    .bind(&database.name)
    .fetch_one(&mut pg)
    .await
    .expect("pg_stat_ssl");
    assert!(encrypted >= 1, "no TLS connection from adpipe");
    // A second app on the same database migrates nothing and sees the same key.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let mut second = config.clone();
    second.server.data_dir = dir2.path().to_path_buf();
    let app2 = App::start(second).await.expect("second start");
    let me = send(&app2, get("/v1/whoami", Some(&key))).await;
    assert_eq!(
        (me.status, me.json["tenant"].as_str()),
        (StatusCode::OK, Some("demo"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_shared_through_redis() {
    if !engines_available(&[Engine::Redis]) {
        return;
    }
    let tenant = format!("rl-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut apps = vec![];
    let mut dirs = vec![];
    for _ in 0..2 {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = meta_config(&dir);
        config.server.watch_plugins = false;
        config.cache.url = Some(redis_url());
        config.api.rate_limits.enabled = true;
        config.api.rate_limits.read.caller = adpipe::config::Rate {
            per_second: 1,
            burst: 4,
        };
        let app = App::start(config).await.expect("start with Redis");
        assert!(app.rate_limits.is_shared());
        apps.push(app);
        dirs.push(dir);
    }
    let viewer = token(&tenant, &[Role::Viewer], 60);
    let mut remaining = vec![];
    for i in 0..4 {
        let answer = send(&apps[i % 2], get("/v1/whoami", Some(&viewer))).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        remaining.push(
            answer.headers["ratelimit-remaining"]
                .to_str()
                .expect("header")
                .to_owned(),
        );
    }
    // One budget across both processes: 3, 2, 1, 0 whichever app answered.
    assert_eq!(remaining, vec!["3", "2", "1", "0"]);
    for app in &apps {
        let answer = send(app, get("/v1/whoami", Some(&viewer))).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
        );
        assert_eq!(answer.headers["retry-after"], "1");
    }
}

/// `(campaign_id, column)` of every row of an insights answer.
fn per_campaign(answer: &Value, column: &str) -> Vec<(Value, Value)> {
    answer["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r["campaign_id"].clone(), r[column].clone()))
        .collect()
}

fn clickhouse_url() -> String {
    Engine::ClickHouse.url()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_store_answers_exactly_like_the_embedded_store() {
    if !engines_available(&[Engine::ClickHouse]) {
        return;
    }
    let database = format!(
        "adpipe_test_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut apps = vec![];
    let mut dirs = vec![];
    let (secret_var, secret) = ("ADPIPE_TEST_COMPARE_APP_SECRET", "app-secret-compare");
    std::env::set_var(secret_var, secret);
    for clickhouse in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut meta = pipeline("meta", "demo", "meta");
        meta.webhook_secret_env = Some(secret_var.into());
        let mut config = config(&dir, vec![plugin("meta")], vec![meta]);
        config.server.watch_plugins = false;
        if clickhouse {
            config.store.kind = adpipe::config::StoreKind::Clickhouse;
            config.store.url = Some(clickhouse_url());
            config.store.database = Some(database.clone());
        }
        apps.push(
            App::start(config)
                .await
                .expect("start (ClickHouse: scripts/services.sh up)"),
        );
        dirs.push(dir);
    }
    let ingest = token("demo", &[Role::Ingest], 60);
    let viewer = token("demo", &[Role::Viewer], 60);
    // Two campaigns over three days, then a restatement of one day with new
    // totals, and the same page delivered twice.
    let first = page(vec![
        meta_row("c1", "s1", "a1", "2026-11-01", 1000, 25, "12.50", 2),
        meta_row("c1", "s1", "a2", "2026-11-01", 500, 5, "3.10", 0),
        meta_row("c1", "s1", "a1", "2026-11-02", 800, 20, "10.00", 1),
        meta_row("c2", "s2", "a3", "2026-11-02", 300, 3, "1.99", 0),
        meta_row("c2", "s2", "a3", "2026-11-09", 90, 9, "0.90", 3),
    ]);
    // The restatement does not ask for `campaign_name` (Meta then omits
    // it): the name reported earlier stays.
    let mut restated_row = meta_row("c1", "s1", "a1", "2026-11-02", 900, 22, "11.25", 2);
    restated_row
        .as_object_mut()
        .expect("a row object")
        .remove("campaign_name");
    let restated = page(vec![restated_row]);
    // A lead (created 2025-11-01) that names only its ad, before any report
    // has named that ad: both stores place it under campaign c2 once the
    // report arrives.
    let lead = crate::api::leadgen("L-compare", "a3", "a3");
    for app in &apps {
        let answer = send(
            app,
            crate::api::webhook(&lead, Some(&crate::api::signed(secret, &lead))),
        )
        .await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
        let early = send(
            app,
            get(
                "/v1/insights?from=2025-11-01&to=2025-11-30&granularity=total&group_by=campaign_id&metrics=leads",
                Some(&viewer),
            ),
        )
        .await;
        assert_eq!(
            early.json["rows"],
            json!([]),
            "a lead it cannot place yet is not shown"
        );
    }
    for app in &apps {
        for body in [&first, &restated, &restated] {
            let answer = send(
                app,
                post("/v1/pipelines/meta/reports", Some(&ingest), body.clone()),
            )
            .await;
            assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
        }
    }
    let queries = [
        "from=2026-11-01&to=2026-11-30&granularity=day",
        "from=2026-11-01&to=2026-11-30&granularity=week&group_by=campaign_id",
        "from=2026-11-01&to=2026-11-30&granularity=total&group_by=ad_id",
        "from=2026-11-02&to=2026-11-02&granularity=total&campaign_id=c1",
        "from=2026-11-01&to=2026-11-30&granularity=month&group_by=platform,account_id&order_by=-spend",
        "from=2025-11-01&to=2025-11-30&granularity=total&group_by=campaign_id,ad_id&metrics=leads",
    ];
    for q in queries {
        let uri = format!("/v1/insights?{q}");
        let embedded = send(&apps[0], get(&uri, Some(&viewer))).await;
        let clickhouse = send(&apps[1], get(&uri, Some(&viewer))).await;
        assert_eq!(embedded.status, StatusCode::OK, "{}", embedded.text);
        assert_eq!(clickhouse.json, embedded.json, "{q}");
        assert!(
            !embedded.json["rows"].as_array().expect("rows").is_empty(),
            "{q}"
        );
    }
    // The lead, learned before its ad, counts once under the ad's campaign.
    let leads = send(
        &apps[1],
        get(
            "/v1/insights?from=2025-11-01&to=2025-11-30&granularity=total&group_by=campaign_id&metrics=leads",
            Some(&viewer),
        ),
    )
    .await;
    let by_campaign = per_campaign(&leads.json, "leads");
    assert_eq!(by_campaign, vec![(json!("c2"), json!(1))], "{}", leads.text);
    // The restated day counts its new totals once.
    let day = send(
        &apps[1],
        get(
            "/v1/insights?from=2026-11-02&to=2026-11-02&granularity=total&campaign_id=c1",
            Some(&viewer),
        ),
    )
    .await;
    assert_eq!(day.json["rows"][0]["impressions"], 900);
    assert_eq!(day.json["rows"][0]["spend"], 11.25);
    let named = send(
        &apps[1],
        get(
            "/v1/insights?from=2026-11-01&to=2026-11-30&granularity=total&group_by=campaign_id",
            Some(&viewer),
        ),
    )
    .await;
    let names = per_campaign(&named.json, "campaign_name");
    assert_eq!(
        names,
        vec![
            (json!("c1"), json!("Campaign c1")),
            (json!("c2"), json!("Campaign c2"))
        ],
        "a row without a name keeps the one reported before: {}",
        named.text
    );
    let campaigns = send(&apps[1], get("/v1/campaigns", Some(&viewer))).await;
    assert_eq!(
        campaigns.json,
        send(&apps[0], get("/v1/campaigns", Some(&viewer)))
            .await
            .json
    );
    assert_eq!(
        campaigns.json["campaigns"].as_array().map(Vec::len),
        Some(2)
    );
    let ready = send(&apps[1], get("/readyz", None)).await;
    assert_eq!(ready.json["checks"]["store"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_urls_reach_redis_over_tls() {
    if !engines_available(&[Engine::RedisServer]) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let (cert_path, key_path) = (dir.path().join("redis.pem"), dir.path().join("redis.key"));
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let mut server = std::process::Command::new("redis-server")
        .args([
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--tls-cert-file")
        .arg(&cert_path)
        .arg("--tls-key-file")
        .arg(&key_path)
        .arg("--tls-ca-cert-file")
        .arg(&cert_path)
        .args([
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "redis TLS port");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let url = format!("rediss://localhost:{port}");
    let mut config = meta_config(&dir);
    config.server.watch_plugins = false;
    config.cache.url = Some(url.clone());
    config.cache.ca_file = Some(cert_path.clone());
    config.api.rate_limits.enabled = true;
    let app = App::start(config).await.expect("start with rediss://");
    assert!(app.rate_limits.is_shared());
    let viewer = token("demo", &[Role::Viewer], 60);
    let answer = send(&app, get("/v1/whoami", Some(&viewer))).await;
    assert_eq!(answer.status, StatusCode::OK);
    // The budget lives in the TLS-only Redis.
    let client = redis::Client::build_with_tls(
        url.as_str(),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(cert.cert.pem().into_bytes()),
        },
    )
    .expect("client");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("TLS connection");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("adpipe:ratelimit:*")
        .query_async(&mut connection)
        .await
        .expect("keys");
    assert_eq!(keys.len(), 2, "{keys:?}"); // the caller's and the tenant's read budgets
                                           // Without the certificate the server is not trusted.
    let untrusted = redis::Client::open(url.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await;
    assert!(untrusted.is_err());
    let _ = server.kill();
    let _ = server.wait();
}
