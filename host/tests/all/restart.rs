//! Crash safety of a real `adpipe serve` process: SIGKILL right after
//! acknowledged ingests, restart on the same data directory, totals exact —
//! nothing acknowledged lost, nothing counted twice (also after redelivery).

use std::time::Duration;

use adpipe::auth::Role;
use serde_json::{json, Value};

use crate::common::*;

/// A level=ad page of `n` rows, campaign `c{page % 3}`, distinct ads per page.
fn report_page(page: usize, n: usize) -> (String, i64, i64) {
    let mut rows = Vec::new();
    let (mut impressions, mut spend_cents) = (0i64, 0i64);
    for i in 0..n {
        let imp = (page * 1000 + i * 7 + 13) as i64;
        let cents = (page * 311 + i * 17 + 5) as i64;
        impressions += imp;
        spend_cents += cents;
        rows.push(json!({
            "account_id": "998877", "account_currency": "USD",
            "campaign_id": format!("c{}", page % 3), "adset_id": format!("s{page}"), "ad_id": format!("a{page}-{i}"),
            "date_start": "2026-10-05", "date_stop": "2026-10-05",
            "impressions": imp.to_string(), "clicks": (imp / 50).to_string(),
            "spend": format!("{}.{:02}", cents / 100, cents % 100),
        }));
    }
    (
        json!({"data": rows, "paging": {"cursors": {"before": "A", "after": "B"}}}).to_string(),
        impressions,
        spend_cents,
    )
}

fn leadgen(id: &str) -> String {
    json!({"object": "page", "entry": [{"id": "1", "time": 1_791_201_700, "changes": [{"field": "leadgen",
        "value": {"ad_id": "a0-0", "adgroup_id": "s0", "leadgen_id": id, "form_id": "5", "created_time": 1_791_201_600, "page_id": "1"}}]}]})
    .to_string()
}

async fn total(client: &reqwest::Client, base: &str, token: &str) -> Value {
    let response = client
        .get(format!("{base}/v1/insights?from=2026-10-01&to=2026-10-31&granularity=total&metrics=impressions,spend,leads"))
        .bearer_auth(token)
        .send()
        .await
        .expect("insights");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    body["rows"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_after_acknowledged_ingest_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_var = "ADPIPE_RESTART_TEST_APP_SECRET";
    let config = dir.path().join("pipelines.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{data}\"\n\n[[plugins]]\nname = \"meta\"\npath = \"{plugin}\"\n\n\
             [[pipelines]]\nname = \"meta\"\ntenant = \"demo\"\nadapter = \"meta\"\nwebhook_secret_env = \"{secret_var}\"\n",
            data = dir.path().join("data").display(),
            plugin = plugin_path("meta").display(),
        ),
    )
    .expect("write config");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let ingest = token("demo", &[Role::Ingest], 600);
    let viewer = token("demo", &[Role::Viewer], 600);
    let sign = |body: &str| {
        format!(
            "sha256={}",
            adpipe::pipeline::signature::hmac_hex(b"restart-app-secret", body.as_bytes())
        )
    };

    let server = Server::spawn(
        &config,
        &[
            (secret_var, "restart-app-secret"),
            ("ADPIPE_JWT_SECRET", JWT_SECRET),
        ],
        &[],
    );
    let (mut want_impressions, mut want_cents) = (0i64, 0i64);
    let pages: Vec<_> = (0..30).map(|p| report_page(p, 40)).collect();
    for (p, (body, impressions, cents)) in pages.iter().enumerate() {
        want_impressions += impressions;
        want_cents += cents;
        // Every fifth page is delivered twice: a retry must not double count.
        for _ in 0..(1 + usize::from(p % 5 == 0)) {
            let r = client
                .post(format!("{}/v1/pipelines/meta/reports", server.base))
                .bearer_auth(&ingest)
                .body(body.clone())
                .send()
                .await
                .expect("post report");
            assert_eq!(r.status(), 202);
        }
    }
    for lead in ["lead-1", "lead-2", "lead-1"] {
        let body = leadgen(lead);
        let r = client
            .post(format!("{}/v1/webhooks/meta", server.base))
            .header("x-hub-signature-256", sign(&body))
            .body(body)
            .send()
            .await
            .expect("post webhook");
        assert_eq!(r.status(), 202);
    }
    // SIGKILL right after the last 202: no graceful shutdown, consumer mid-flight.
    drop(server);

    let server = Server::spawn(
        &config,
        &[
            (secret_var, "restart-app-secret"),
            ("ADPIPE_JWT_SECRET", JWT_SECRET),
        ],
        &[],
    );
    let expected = json!({"currency": "USD", "impressions": want_impressions, "spend": want_cents as f64 / 100.0, "leads": 2});
    assert_eq!(total(&client, &server.base, &viewer).await, expected);

    // Redelivery after the restart still counts once.
    let body = leadgen("lead-2");
    let r = client
        .post(format!("{}/v1/webhooks/meta", server.base))
        .header("x-hub-signature-256", sign(&body))
        .body(body)
        .send()
        .await
        .expect("post webhook");
    assert_eq!(r.status(), 202);
    let r = client
        .post(format!("{}/v1/pipelines/meta/reports", server.base))
        .bearer_auth(&ingest)
        .body(pages[7].0.clone())
        .send()
        .await
        .expect("post report");
    assert_eq!(r.status(), 202);
    assert_eq!(total(&client, &server.base, &viewer).await, expected);

    // Every acknowledged payload was kept for replay exactly once (36 report
    // deliveries and 3 webhooks before the SIGKILL, 2 after), including
    // those whose kept copy was still on the bus with their rows when the
    // process died; replaying them all leaves the totals as they are.
    let admin = token("demo", &[Role::Admin], 600);
    let today = chrono::Utc::now().date_naive();
    let (from, to) = (
        (today - chrono::Days::new(1)).to_string(),
        today.to_string(),
    );
    let r = client
        .post(format!("{}/v1/replay", server.base))
        .bearer_auth(&admin)
        .json(&json!({"pipeline": "meta", "from": from, "to": to}))
        .send()
        .await
        .expect("replay");
    assert_eq!(r.status(), 200);
    let replayed: Value = r.json().await.expect("json");
    assert_eq!(
        (&replayed["payloads"], &replayed["failed"]),
        (&json!(30 + 6 + 3 + 2), &json!(0)),
        "{replayed}"
    );
    assert_eq!(total(&client, &server.base, &viewer).await, expected);
}
