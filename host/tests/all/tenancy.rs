//! One tenant cannot hurt another through a shared plugin or a shared
//! platform app (issue 10), on real `adpipe serve` processes: circuit breakers
//! are per pipeline, a full plugin is back-pressure (`503 plugin_busy`), and a
//! signed webhook delivery naming an account outside the pipeline's
//! `webhook_accounts` is refused and dead-lettered.

use std::time::{Duration, Instant};

use adpipe::auth::Role;
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::*;

/// A config file in `dir` (data directory beside it) with `body` after `[server]`.
fn config_file(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    let config = dir.join("adpipe.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nwatch_plugins = false\n\n\
             [api.rate_limits]\nenabled = false\n\n{body}",
            dir.join("data").display()
        ),
    )
    .expect("write config");
    config
}

/// Two tenants, one pipeline each (`alpha`: t1, `beta`: t2), on the same
/// `misbehaving` adapter; and t1's `gamma` on Meta.
fn two_tenants_one_plugin(dir: &std::path::Path, plugin_extra: &str) -> std::path::PathBuf {
    config_file(
        dir,
        &format!(
            "[[plugins]]\nname = \"misbehaving\"\npath = \"{}\"\n{plugin_extra}\n\n\
             [[plugins]]\nname = \"meta\"\npath = \"{}\"\n\n\
             [[pipelines]]\nname = \"alpha\"\ntenant = \"t1\"\nadapter = \"misbehaving\"\ncurrency = \"USD\"\n\n\
             [[pipelines]]\nname = \"beta\"\ntenant = \"t2\"\nadapter = \"misbehaving\"\ncurrency = \"USD\"\n\n\
             [[pipelines]]\nname = \"gamma\"\ntenant = \"t1\"\nadapter = \"meta\"\ncurrency = \"USD\"\n",
            plugin_path("misbehaving").display(),
            plugin_path("meta").display()
        ),
    )
}

struct Reply {
    status: StatusCode,
    retry_after: Option<String>,
    json: Value,
}

impl Reply {
    fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

async fn call(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("request");
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await.expect("body");
    Reply {
        status,
        retry_after,
        json: serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}

fn push(
    client: &reqwest::Client,
    base: &str,
    pipeline: &str,
    token: &str,
    body: &str,
) -> reqwest::RequestBuilder {
    client
        .post(format!("{base}/v1/pipelines/{pipeline}/reports"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned())
}

/// The tenant's pipeline entry from `GET /v1/pipelines`.
async fn pipeline_entry(client: &reqwest::Client, base: &str, tenant: &str, name: &str) -> Value {
    let admin = token(tenant, &[Role::Admin], 60);
    let list = call(
        client
            .get(format!("{base}/v1/pipelines"))
            .bearer_auth(&admin),
    )
    .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.json);
    let pipelines = list.json["pipelines"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        pipelines.iter().all(|p| p["tenant"] == tenant),
        "another tenant's pipeline is listed: {}",
        list.json
    );
    pipelines
        .into_iter()
        .find(|p| p["name"] == name)
        .unwrap_or(Value::Null)
}

/// Totals of a tenant on 2026-11-01 (the misbehaving adapter's date).
async fn totals(client: &reqwest::Client, base: &str, tenant: &str) -> Value {
    let viewer = token(tenant, &[Role::Viewer], 60);
    // Bus records are applied asynchronously; the answer is exact once applied.
    let answer = call(
        client
            .get(format!(
                "{base}/v1/insights?from=2026-11-01&to=2026-11-01&granularity=total"
            ))
            .bearer_auth(&viewer),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    answer.json["rows"]
        .as_array()
        .and_then(|rows| rows.first().cloned())
        .unwrap_or(Value::Null)
}

#[test]
fn one_tenants_trapping_payloads_quarantine_only_its_own_pipeline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = two_tenants_one_plugin(dir.path(), "time_limit_ms = 2000");
    let server = Server::spawn(&config, &[("ADPIPE_JWT_SECRET", JWT_SECRET)], &[]);
    let base = server.base.clone();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let (t1, t2) = (
            token("t1", &[Role::Ingest], 600),
            token("t2", &[Role::Ingest], 600),
        );
        // Payloads the plugin correctly refuses (a plugin-error) are the
        // sender's mistake, not plugin faults: they never open a breaker.
        for _ in 0..6 {
            let refused = call(push(&client, &base, "gamma", &t1, "{\"data\": 7}")).await;
            assert_eq!(
                (refused.status, refused.code()),
                (StatusCode::BAD_REQUEST, "invalid_shape"),
                "{}",
                refused.json
            );
        }
        let gamma = pipeline_entry(&client, &base, "t1", "gamma").await;
        assert_eq!(
            gamma["breaker"],
            serde_json::json!({"state": "closed", "consecutive_failures": 0, "retry_after_s": null}),
            "{gamma}"
        );

        // Tenant 1 feeds its pipeline trapping payloads until its breaker opens.
        for i in 0..5 {
            let answer = call(push(&client, &base, "alpha", &t1, "panic")).await;
            assert_eq!(
                (answer.status, answer.code()),
                (StatusCode::INTERNAL_SERVER_ERROR, "plugin_failed"),
                "trap {i}: {}",
                answer.json
            );
        }
        let quarantined = call(push(&client, &base, "alpha", &t1, "fine:t1-late")).await;
        assert_eq!(
            (quarantined.status, quarantined.code()),
            (StatusCode::SERVICE_UNAVAILABLE, "plugin_quarantined"),
            "{}",
            quarantined.json
        );
        let wait: u64 = quarantined
            .retry_after
            .as_deref()
            .and_then(|s| s.parse().ok())
            .expect("Retry-After in seconds");
        assert!((1..=30).contains(&wait), "{wait}");
        assert!(
            quarantined.json["error"]["dead_letter_id"].is_string(),
            "{}",
            quarantined.json
        );

        // Tenant 2's pipeline on the very same plugin goes on, with exact totals.
        for campaign in ["t2-a", "t2-b", "t2-c"] {
            let answer = call(push(&client, &base, "beta", &t2, &format!("fine:{campaign}"))).await;
            assert_eq!(
                (answer.status, answer.json["accepted"].as_u64()),
                (StatusCode::ACCEPTED, Some(1)),
                "{}",
                answer.json
            );
        }
        let started = Instant::now();
        let beta_totals = loop {
            let row = totals(&client, &base, "t2").await;
            if row["impressions"] == 300 || started.elapsed() > Duration::from_secs(10) {
                break row;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            (
                beta_totals["impressions"].as_i64(),
                beta_totals["clicks"].as_i64(),
                beta_totals["spend"].as_f64()
            ),
            (Some(300), Some(9), Some(4.5)),
            "{beta_totals}"
        );
        // Nothing of tenant 1's refused payloads reached the store.
        assert_eq!(totals(&client, &base, "t1").await, Value::Null);

        // Each tenant sees its own pipeline's breaker.
        let alpha = pipeline_entry(&client, &base, "t1", "alpha").await;
        assert_eq!(alpha["breaker"]["state"], "open", "{alpha}");
        assert_eq!(alpha["breaker"]["consecutive_failures"], 5, "{alpha}");
        assert!(alpha["breaker"]["retry_after_s"].as_u64() >= Some(1), "{alpha}");
        let beta = pipeline_entry(&client, &base, "t2", "beta").await;
        assert_eq!(
            beta["breaker"],
            serde_json::json!({"state": "closed", "consecutive_failures": 0, "retry_after_s": null}),
            "{beta}"
        );
        // Operators see every pipeline's breaker on the plugin, and the metrics.
        let operator = token("t1", &[Role::Operator], 60);
        let plugins = call(client.get(format!("{base}/v1/plugins")).bearer_auth(&operator)).await;
        let entry = plugins.json["plugins"]
            .as_array()
            .and_then(|l| l.iter().find(|p| p["name"] == "misbehaving").cloned())
            .expect("plugin listed");
        assert_eq!(entry["state"], "degraded", "{entry}");
        assert_eq!(entry["quarantined_pipelines"], serde_json::json!(["alpha"]), "{entry}");
        assert_eq!(entry["pipelines"]["alpha"]["state"], "open", "{entry}");
        assert_eq!(entry["pipelines"]["beta"]["state"], "closed", "{entry}");
        let metrics = client
            .get(format!("{base}/metrics"))
            .bearer_auth(&operator)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        for line in [
            "adpipe_pipeline_quarantined{pipeline=\"alpha\",plugin=\"misbehaving\"} 1",
            "adpipe_pipeline_quarantined{pipeline=\"beta\",plugin=\"misbehaving\"} 0",
            "adpipe_plugin_quarantined{plugin=\"misbehaving\"} 1",
        ] {
            assert!(metrics.contains(line), "`{line}` missing in\n{metrics}");
        }

        // A reload closes every breaker of the plugin: tenant 1 is served again.
        let reload = call(
            client
                .post(format!("{base}/v1/plugins/misbehaving/reload"))
                .bearer_auth(&operator),
        )
        .await;
        assert_eq!(reload.json["result"]["outcome"], "unchanged", "{}", reload.json);
        let answer = call(push(&client, &base, "alpha", &t1, "fine:t1-after")).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.json);
        let alpha = pipeline_entry(&client, &base, "t1", "alpha").await;
        assert_eq!(alpha["breaker"]["state"], "closed", "{alpha}");
    });
}

#[test]
fn a_full_plugin_answers_503_plugin_busy_and_opens_no_breaker() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One call slot: a call running to its 4 s time limit holds it.
    let config =
        two_tenants_one_plugin(dir.path(), "time_limit_ms = 4000\nmax_concurrent_calls = 1");
    let server = Server::spawn(&config, &[("ADPIPE_JWT_SECRET", JWT_SECRET)], &[]);
    let base = server.base.clone();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let (t1, t2) = (
            token("t1", &[Role::Ingest], 600),
            token("t2", &[Role::Ingest, Role::Admin], 600),
        );
        let looping = tokio::spawn(call(push(&client, &base, "beta", &t2, "loop")));
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Every slot taken: the next calls are refused after a short wait, as back-pressure.
        // (Two tries of about a second each, well within the looping call's 4 s.)
        for i in 0..2 {
            let started = Instant::now();
            let busy = call(push(
                &client,
                &base,
                "alpha",
                &t1,
                &format!("fine:busy-{i}"),
            ))
            .await;
            assert_eq!(
                (busy.status, busy.code(), busy.retry_after.as_deref()),
                (StatusCode::SERVICE_UNAVAILABLE, "plugin_busy", Some("1")),
                "{}",
                busy.json
            );
            assert!(
                busy.json["error"]["dead_letter_id"].is_null(),
                "{}",
                busy.json
            );
            let waited = started.elapsed();
            assert!(
                waited >= Duration::from_millis(900) && waited < Duration::from_millis(1500),
                "{waited:?}"
            );
        }
        let timed_out = looping.await.expect("join");
        assert_eq!(
            (timed_out.status, timed_out.code()),
            (StatusCode::INTERNAL_SERVER_ERROR, "plugin_timeout"),
            "{}",
            timed_out.json
        );
        // Busy answers were no plugin faults: tenant 1's breaker saw nothing,
        // tenant 2's counts its one timeout.
        let alpha = pipeline_entry(&client, &base, "t1", "alpha").await;
        assert_eq!(
            (
                alpha["breaker"]["state"].as_str(),
                alpha["breaker"]["consecutive_failures"].as_u64()
            ),
            (Some("closed"), Some(0)),
            "{alpha}"
        );
        let beta = pipeline_entry(&client, &base, "t2", "beta").await;
        assert_eq!(beta["breaker"]["consecutive_failures"], 1, "{beta}");
        // Nothing was kept as a dead letter for the busy answers, and the slot is free again.
        let letters = call(
            client
                .get(format!("{base}/v1/dead-letters"))
                .bearer_auth(token("t1", &[Role::Admin], 60)),
        )
        .await;
        assert_eq!(
            letters.json["dead_letters"],
            serde_json::json!([]),
            "{}",
            letters.json
        );
        let answer = call(push(&client, &base, "alpha", &t1, "fine:after")).await;
        assert_eq!(
            (answer.status, answer.json["accepted"].as_u64()),
            (StatusCode::ACCEPTED, Some(1)),
            "{}",
            answer.json
        );
    });
}

/// Hex HMAC-SHA256 of `parts`, with the `hmac` crate directly.
fn hmac_hex(secret: &[u8], parts: &[&[u8]]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    for part in parts {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

fn adapter_fixture(plugin: &str, name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/adapters")
        .join(plugin)
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_signed_delivery_naming_another_tenants_account_is_refused_and_dead_lettered() {
    const META_SECRET: &str = "one-meta-app-shared-by-tenants";
    const LI_SECRET: &str = "one-linkedin-app-shared-by-tenants";
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = |name: &str, tenant: &str, adapter: &str, secret_env: &str, accounts: &str| {
        format!(
            "[[pipelines]]\nname = \"{name}\"\ntenant = \"{tenant}\"\nadapter = \"{adapter}\"\n\
             currency = \"USD\"\nwebhook_secret_env = \"{secret_env}\"\nwebhook_accounts = {accounts}\n\n"
        )
    };
    let config = config_file(
        dir.path(),
        &format!(
            "[[plugins]]\nname = \"meta\"\npath = \"{}\"\n\n[[plugins]]\nname = \"linkedin\"\npath = \"{}\"\n\n{}{}{}{}",
            plugin_path("meta").display(),
            plugin_path("linkedin").display(),
            // Meta deliveries are checked against their pages; LinkedIn's against
            // the lead's sponsored account (listed here as a URN or as the id).
            pipeline("meta-a", "ta", "meta", "ADPIPE_TEST_SHARED_META", "[\"104383482312345\"]"),
            pipeline("meta-b", "tb", "meta", "ADPIPE_TEST_SHARED_META", "[\"555000555\"]"),
            pipeline("li-a", "ta", "linkedin", "ADPIPE_TEST_SHARED_LI", "[\"urn:li:sponsoredAccount:509876\"]"),
            pipeline("li-b", "tb", "linkedin", "ADPIPE_TEST_SHARED_LI", "[\"111\"]"),
        ),
    );
    let server = Server::spawn(
        &config,
        &[
            ("ADPIPE_JWT_SECRET", JWT_SECRET),
            ("ADPIPE_TEST_SHARED_META", META_SECRET),
            ("ADPIPE_TEST_SHARED_LI", LI_SECRET),
        ],
        &[],
    );
    let base = server.base.clone();
    let meta_body = adapter_fixture("meta", "webhook_leadgen.json");
    let meta_signature = format!(
        "sha256={}",
        hmac_hex(META_SECRET.as_bytes(), &[meta_body.as_bytes()])
    );
    let li_body = adapter_fixture("linkedin", "webhook_leads.json");
    let li_signature = hmac_hex(LI_SECRET.as_bytes(), &[b"hmacsha256=", li_body.as_bytes()]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let deliver = |pipeline: &str, header: &str, signature: &str, body: &str| {
            call(
                client
                    .post(format!("{base}/v1/webhooks/{pipeline}"))
                    .header("content-type", "application/json")
                    .header(header, signature)
                    .body(body.to_owned()),
            )
        };
        // The page's own pipeline takes the delivery.
        let own = deliver("meta-a", "x-hub-signature-256", &meta_signature, &meta_body).await;
        assert_eq!(
            (own.status, own.json["accepted"].as_u64()),
            (StatusCode::ACCEPTED, Some(3)),
            "{}",
            own.json
        );
        // The same signed delivery replayed to another tenant's URL: refused, kept.
        let replayed = deliver("meta-b", "x-hub-signature-256", &meta_signature, &meta_body).await;
        assert_eq!(
            (replayed.status, replayed.code()),
            (StatusCode::FORBIDDEN, "account_not_allowed"),
            "{}",
            replayed.json
        );
        let message = replayed.json["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains("`104383482312345`") && message.contains("`meta-b`"),
            "{message}"
        );
        let meta_letter = replayed.json["error"]["dead_letter_id"]
            .as_str()
            .expect("kept")
            .to_owned();

        let own = deliver("li-a", "x-li-signature", &li_signature, &li_body).await;
        assert_eq!(own.status, StatusCode::ACCEPTED, "{}", own.json);
        assert!(own.json["accepted"].as_u64() >= Some(1), "{}", own.json);
        let replayed = deliver("li-b", "x-li-signature", &li_signature, &li_body).await;
        assert_eq!(
            (replayed.status, replayed.code()),
            (StatusCode::FORBIDDEN, "account_not_allowed"),
            "{}",
            replayed.json
        );
        assert!(
            replayed.json["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("`509876`"),
            "{}",
            replayed.json
        );
        let li_letter = replayed.json["error"]["dead_letter_id"]
            .as_str()
            .expect("kept")
            .to_owned();

        // Tenant B's dead letters hold both deliveries with the reason; A has none.
        let letters = call(
            client
                .get(format!("{base}/v1/dead-letters"))
                .bearer_auth(token("tb", &[Role::Admin], 60)),
        )
        .await;
        let mut kept: Vec<(String, String, String, String)> = letters.json["dead_letters"]
            .as_array()
            .expect("list")
            .iter()
            .map(|d| {
                let text = |k: &str| d[k].as_str().unwrap_or("").to_owned();
                (text("id"), text("pipeline"), text("source"), text("code"))
            })
            .collect();
        kept.sort();
        let mut expected = vec![
            (
                meta_letter,
                "meta-b".to_owned(),
                "webhook".to_owned(),
                "account_not_allowed".to_owned(),
            ),
            (
                li_letter,
                "li-b".to_owned(),
                "webhook".to_owned(),
                "account_not_allowed".to_owned(),
            ),
        ];
        expected.sort();
        assert_eq!(kept, expected, "{}", letters.json);
        let letters = call(
            client
                .get(format!("{base}/v1/dead-letters"))
                .bearer_auth(token("ta", &[Role::Admin], 60)),
        )
        .await;
        assert_eq!(
            letters.json["dead_letters"],
            serde_json::json!([]),
            "{}",
            letters.json
        );

        // Nothing of the refused deliveries reached the bus.
        let metrics = client
            .get(format!("{base}/metrics"))
            .bearer_auth(token("ta", &[Role::Operator], 60))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let ingested = |pipeline: &str| -> Option<String> {
            metrics
                .lines()
                .find(|l| {
                    l.starts_with(&format!(
                        "adpipe_ingested_rows_total{{pipeline=\"{pipeline}\""
                    ))
                })
                .map(str::to_owned)
        };
        assert!(
            ingested("meta-a").is_some_and(|l| l.ends_with(" 3")),
            "{metrics}"
        );
        assert_eq!(ingested("meta-b"), None, "{metrics}");
        assert_eq!(ingested("li-b"), None, "{metrics}");
    });
}
