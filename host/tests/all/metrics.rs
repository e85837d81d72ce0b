//! Metric plugins through the host: `/v1/insights?metrics=` accepts their
//! metric names and gets values computed in one batch call per answer from
//! summed components, exactly.

use adpipe::app::App;
use adpipe::auth::Role;
use adpipe::config::PluginKind;
use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::common::*;

fn report() -> String {
    let row = |campaign: &str, ad: &str, spend: &str, value: &str, lead_actions: u32| {
        json!({"account_id": "77", "account_currency": "USD", "campaign_id": campaign, "adset_id": format!("s-{ad}"), "ad_id": ad,
               "date_start": "2026-11-01", "date_stop": "2026-11-01", "impressions": "1000", "clicks": "50", "spend": spend,
               "actions": [{"action_type": "lead", "value": lead_actions.to_string()}, {"action_type": "purchase", "value": "2"}],
               "action_values": [{"action_type": "purchase", "value": value}]})
    };
    json!({"data": [row("c1", "a1", "30.00", "90.00", 2), row("c2", "a2", "10.00", "55.00", 0)]})
        .to_string()
}

fn lead(id: &str, ad: &str) -> String {
    json!({"object": "page", "entry": [{"id": "1", "time": 1_793_541_200, "changes": [{"field": "leadgen",
        "value": {"ad_id": ad, "adgroup_id": format!("s-{ad}"), "leadgen_id": id, "created_time": 1_793_541_200}}]}]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_plugins_compute_from_summed_components() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::env::set_var("ADPIPE_TEST_METRICS_SECRET", "s");
    let mut meta = pipeline("meta", "demo", "meta");
    meta.metrics = vec!["leads".into(), "blended".into()];
    meta.webhook_secret_env = Some("ADPIPE_TEST_METRICS_SECRET".into());
    let other = pipeline("other", "other", "meta");
    let mut leads = plugin("metrics-leads");
    leads.name = "leads".into();
    leads.kind = PluginKind::Metric;
    let mut blended = plugin("metrics-blended");
    blended.name = "blended".into();
    blended.kind = PluginKind::Metric;
    let app = App::start(config(
        &dir,
        vec![plugin("meta"), leads, blended],
        vec![meta, other],
    ))
    .await
    .expect("start");
    let admin = token("demo", &[Role::Admin, Role::Operator], 60);

    let answer = send(
        &app,
        post("/v1/pipelines/meta/reports", Some(&admin), report()),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    for (id, ad) in [("L1", "a1"), ("L2", "a1"), ("L3", "a1"), ("L4", "a2")] {
        let body = lead(id, ad);
        let signature = format!(
            "sha256={}",
            adpipe::pipeline::signature::hmac_hex(b"s", body.as_bytes())
        );
        let request = axum::http::Request::post("/v1/webhooks/meta")
            .header("x-hub-signature-256", signature)
            .body(axum::body::Body::from(body))
            .expect("request");
        assert_eq!(send(&app, request).await.status, StatusCode::ACCEPTED);
    }

    let query = "/v1/insights?from=2026-11-01&to=2026-11-01&granularity=total&group_by=campaign_id\
                 &metrics=spend,leads,cost_per_lead,lead_rate,blended_leads,blended_cpl,mer";
    let answer = send(&app, get(query, Some(&admin))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let rows = answer.json["rows"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        rows,
        vec![
            json!({"platform": "meta", "campaign_id": "c1", "campaign_name": null, "currency": "USD", "spend": 30.0, "leads": 3,
                   "cost_per_lead": 10.0, "lead_rate": 0.06, "blended_leads": 5.0, "blended_cpl": 6.0, "mer": 3.0}),
            json!({"platform": "meta", "campaign_id": "c2", "campaign_name": null, "currency": "USD", "spend": 10.0, "leads": 1,
                   "cost_per_lead": 10.0, "lead_rate": 0.02, "blended_leads": 1.0, "blended_cpl": 10.0, "mer": 5.5}),
        ]
    );
    // Blended across both campaigns: components are summed first, never averaged.
    let answer = send(
        &app,
        get(
            "/v1/insights?from=2026-11-01&to=2026-11-01&granularity=total&metrics=blended_cpl,mer",
            Some(&admin),
        ),
    )
    .await;
    assert_eq!(
        answer.json["rows"],
        json!([{"currency": "USD", "blended_cpl": 40.0 / 6.0, "mer": 145.0 / 40.0}])
    );

    // The plugin list describes them; another tenant's pipelines don't use them.
    let list = send(&app, get("/v1/plugins", Some(&admin))).await;
    let leads: Vec<Value> = list.json["plugins"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["name"] == "leads")
        .collect();
    assert_eq!(leads[0]["kind"], "metric");
    assert_eq!(
        leads[0]["metrics"][0],
        json!({"name": "cost_per_lead", "unit": "currency", "description": "spend / leads", "inputs": ["spend", "leads"]})
    );
    let reload = send(&app, post("/v1/plugins/leads/reload", Some(&admin), "")).await;
    assert_eq!(
        reload.json["result"]["outcome"], "unchanged",
        "{}",
        reload.text
    );
    let stranger = token("other", &[Role::Viewer], 60);
    let answer = send(
        &app,
        get(
            "/v1/insights?from=2026-11-01&to=2026-11-01&metrics=cost_per_lead",
            Some(&stranger),
        ),
    )
    .await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::BAD_REQUEST, "invalid_parameter")
    );
}
