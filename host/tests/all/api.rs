//! The HTTP contract (docs/contracts.md §4) through the real router, the real Meta
//! component and the embedded bus and store: exact totals, every status.

use adpipe::app::App;
use adpipe::auth::Role;
use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::common::*;

/// A Meta insights row as Graph API v21 returns it at level=ad.
#[allow(clippy::too_many_arguments)]
pub(crate) fn meta_row(
    campaign: &str,
    adset: &str,
    ad: &str,
    day: &str,
    impressions: u64,
    clicks: u64,
    spend: &str,
    purchases: u64,
) -> Value {
    let mut row = json!({
        "account_id": "1234567890",
        "account_currency": "USD",
        "campaign_id": campaign,
        "campaign_name": format!("Campaign {campaign}"),
        "adset_id": adset,
        "ad_id": ad,
        "date_start": day,
        "date_stop": day,
        "impressions": impressions.to_string(),
        "clicks": clicks.to_string(),
        "spend": spend,
        "cpc": "0.5",
        "reach": "900",
    });
    if purchases > 0 {
        // `purchase` includes the pixel's purchases: they must not be counted twice.
        row["actions"] = json!([
            {"action_type": "link_click", "value": clicks.to_string()},
            {"action_type": "offsite_conversion.fb_pixel_purchase", "value": purchases.to_string()},
            {"action_type": "purchase", "value": purchases.to_string()},
        ]);
        row["action_values"] = json!([
            {"action_type": "offsite_conversion.fb_pixel_purchase", "value": format!("{}.00", purchases * 40)},
            {"action_type": "purchase", "value": format!("{}.00", purchases * 40)},
        ]);
    }
    row
}

pub(crate) fn page(rows: Vec<Value>) -> String {
    json!({"data": rows, "paging": {"cursors": {"before": "MAZDZD", "after": "MjQZD"}}}).to_string()
}

/// Push Meta rows as one report page to tenant `demo`'s `meta` pipeline; `202`.
pub(crate) async fn push(app: &App, rows: Vec<Value>) {
    let ingest = token("demo", &[Role::Ingest], 60);
    let answer = send(
        app,
        post("/v1/pipelines/meta/reports", Some(&ingest), page(rows)),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
}

struct Env {
    app: App,
    _dir: tempfile::TempDir,
    secret: String,
    verify: String,
}

async fn start(tag: &str) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_var = format!("ADPIPE_TEST_{tag}_APP_SECRET");
    let verify_var = format!("ADPIPE_TEST_{tag}_VERIFY_TOKEN");
    let secret = format!("app-secret-{tag}");
    let verify = format!("verify-{tag}");
    std::env::set_var(&secret_var, &secret);
    std::env::set_var(&verify_var, &verify);
    let mut meta = pipeline("meta", "demo", "meta");
    meta.webhook_secret_env = Some(secret_var);
    meta.verify_token_env = Some(verify_var);
    let other = pipeline("other-meta", "other", "meta");
    let app = App::start(config(&dir, vec![plugin("meta")], vec![meta, other]))
        .await
        .expect("start");
    Env {
        app,
        _dir: dir,
        secret,
        verify,
    }
}

async fn insights(app: &App, token: &str, query: &str) -> Vec<Value> {
    let answer = send(app, get(&format!("/v1/insights?{query}"), Some(token))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.json["rows"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_aggregate_to_exact_totals_and_ratios() {
    let env = start("TOTALS").await;
    let ingest = token("demo", &[Role::Ingest], 60);
    let viewer = token("demo", &[Role::Viewer], 60);
    let body = page(vec![
        meta_row("c1", "s1", "a1", "2026-11-01", 1000, 20, "12.34", 2),
        meta_row("c1", "s1", "a2", "2026-11-01", 500, 5, "7.66", 0),
        meta_row("c1", "s1", "a1", "2026-11-02", 800, 16, "10.00", 1),
        meta_row("c2", "s2", "a3", "2026-11-01", 3000, 0, "0.00", 0),
    ]);
    let answer = send(
        &env.app,
        post("/v1/pipelines/meta/reports", Some(&ingest), body),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    assert_eq!(answer.json, json!({"accepted": 4}));

    let rows = insights(
        &env.app,
        &viewer,
        "from=2026-11-01&to=2026-11-07&granularity=day&group_by=campaign_id",
    )
    .await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(
        rows[0],
        json!({"date": "2026-11-01", "platform": "meta", "campaign_id": "c1", "campaign_name": "Campaign c1", "currency": "USD",
               "impressions": 1500, "clicks": 25, "spend": 20.0, "conversions": 2.0, "conversion_value": 80.0,
               "ctr": 25.0 / 1500.0, "cpc": 0.8, "cpm": 20.0 * 1000.0 / 1500.0, "cpa": 10.0, "cvr": 0.08, "roas": 4.0})
    );
    assert_eq!(rows[1]["date"], "2026-11-01");
    assert_eq!(rows[1]["campaign_id"], "c2");
    assert_eq!(rows[1]["ctr"], 0.0);
    assert_eq!(rows[1]["cpc"], Value::Null, "zero clicks: cpc is null");
    assert_eq!(rows[1]["roas"], Value::Null, "zero spend: roas is null");
    assert_eq!(rows[2]["date"], "2026-11-02");
    assert_eq!(rows[2]["spend"], 10.0);

    // Total granularity, extra metrics by name.
    let total = insights(
        &env.app,
        &viewer,
        "from=2026-11-01&to=2026-11-07&granularity=total&metrics=spend,clicks,actions_link_click",
    )
    .await;
    assert_eq!(
        total,
        vec![json!({"currency": "USD", "spend": 30.0, "clicks": 41, "actions_link_click": 36})]
    );

    // A restatement replaces the figures of its entity-day; nothing else moves.
    let restated = page(vec![meta_row(
        "c1",
        "s1",
        "a1",
        "2026-11-01",
        1100,
        22,
        "13.34",
        3,
    )]);
    let answer = send(
        &env.app,
        post("/v1/pipelines/meta/reports", Some(&ingest), restated),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    let rows = insights(
        &env.app,
        &viewer,
        "from=2026-11-01&to=2026-11-01&group_by=campaign_id&metrics=impressions,spend,conversions",
    )
    .await;
    assert_eq!(
        rows[0],
        json!({"date": "2026-11-01", "platform": "meta", "campaign_id": "c1", "campaign_name": "Campaign c1", "currency": "USD", "impressions": 1600, "spend": 21.0, "conversions": 3.0})
    );

    // Campaigns the tenant's data names.
    let campaigns = send(&env.app, get("/v1/campaigns", Some(&viewer))).await;
    assert_eq!(campaigns.status, StatusCode::OK);
    assert_eq!(
        campaigns.json["campaigns"],
        json!([
            {"platform": "meta", "account_id": "1234567890", "campaign_id": "c1", "name": "Campaign c1", "currency": "USD"},
            {"platform": "meta", "account_id": "1234567890", "campaign_id": "c2", "name": "Campaign c2", "currency": "USD"},
        ])
    );

    // Another tenant sees none of it, through any route.
    let stranger = token("other", &[Role::Admin], 60);
    assert!(insights(
        &env.app,
        &stranger,
        "from=2026-11-01&to=2026-11-07&group_by=campaign_id,ad_id"
    )
    .await
    .is_empty());
    let answer = send(&env.app, get("/v1/campaigns", Some(&stranger))).await;
    assert_eq!(answer.json["campaigns"], json!([]));
    let answer = send(
        &env.app,
        post("/v1/pipelines/meta/reports", Some(&stranger), page(vec![])),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::NOT_FOUND,
        "another tenant's pipeline is not visible"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_statuses() {
    let env = start("AUTH").await;
    let body = page(vec![meta_row(
        "c1",
        "s1",
        "a1",
        "2026-11-01",
        10,
        1,
        "1.00",
        0,
    )]);
    let uri = "/v1/pipelines/meta/reports";

    let answer = send(&env.app, post(uri, None, body.clone())).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::UNAUTHORIZED, "missing_token")
    );
    let expired = token("demo", &[Role::Admin], -10);
    let answer = send(&env.app, post(uri, Some(&expired), body.clone())).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::UNAUTHORIZED, "token_expired")
    );
    let forged = adpipe::auth::JwtKeys::hs256(b"not-the-server-secret-not-the-server", None)
        .mint(&adpipe::auth::Claims {
            sub: "x".into(),
            tenant: "demo".into(),
            roles: vec![Role::Admin],
            exp: adpipe::auth::now_unix() + 60,
            iat: None,
            nbf: None,
            iss: None,
            aud: None,
        })
        .expect("mint");
    let answer = send(&env.app, post(uri, Some(&forged), body.clone())).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
    let answer = send(&env.app, post(uri, Some("not.a.jwt"), body.clone())).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );

    let viewer = token("demo", &[Role::Viewer], 60);
    let answer = send(&env.app, post(uri, Some(&viewer), body.clone())).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let ingest = token("demo", &[Role::Ingest], 60);
    let answer = send(
        &env.app,
        get("/v1/insights?from=2026-11-01&to=2026-11-01", Some(&ingest)),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::FORBIDDEN,
        "ingest tokens cannot read"
    );
    let answer = send(&env.app, get("/v1/plugins", Some(&viewer))).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let admin = token("demo", &[Role::Admin], 60);
    let answer = send(&env.app, get("/v1/plugins", Some(&admin))).await;
    assert_eq!(
        answer.status,
        StatusCode::FORBIDDEN,
        "the deployment's plugins are the operator's, never implied by a tenant's admin"
    );
    let escalation = send(
        &env.app,
        post(
            "/v1/keys",
            Some(&admin),
            r#"{"name": "ops", "roles": ["operator"]}"#,
        ),
    )
    .await;
    assert_eq!(
        (escalation.status, escalation.code()),
        (StatusCode::FORBIDDEN, "forbidden"),
        "a tenant's admin cannot mint the deployment's role: {}",
        escalation.text
    );
    let operator = token("demo", &[Role::Operator], 60);
    let answer = send(&env.app, get("/v1/plugins", Some(&operator))).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json["plugins"][0]["name"], "meta");
    assert_eq!(answer.json["plugins"][0]["platform"], "meta");
    assert_eq!(
        answer.json["plugins"][0]["content_hash"]
            .as_str()
            .map(str::len),
        Some(64)
    );

    // Health needs no token; unknown routes answer JSON 404.
    assert_eq!(
        send(&env.app, get("/healthz", None)).await.status,
        StatusCode::OK
    );
    let ready = send(&env.app, get("/readyz", None)).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json["checks"]["bus"], "ok");
    let answer = send(&env.app, get("/v1/nope", Some(&admin))).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payloads_are_explained_and_kept() {
    let env = start("BAD").await;
    let ingest = token("demo", &[Role::Ingest, Role::Analyst], 60);
    let uri = "/v1/pipelines/meta/reports";

    let answer = send(&env.app, post(uri, Some(&ingest), "{\"data\": [")).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::BAD_REQUEST, "malformed_payload"),
        "{}",
        answer.text
    );
    assert!(answer.json["error"]["dead_letter_id"].is_string());

    let answer = send(&env.app, post(uri, Some(&ingest), "{\"rows\": []}")).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::BAD_REQUEST, "invalid_shape"),
        "{}",
        answer.text
    );
    assert!(
        answer.json["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("/data"),
        "{}",
        answer.text
    );

    let mut bad_spend = meta_row("c1", "s1", "a1", "2026-11-01", 10, 1, "1.00", 0);
    bad_spend["spend"] = json!("12,5");
    let answer = send(&env.app, post(uri, Some(&ingest), page(vec![bad_spend]))).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::BAD_REQUEST, "invalid_value"),
        "{}",
        answer.text
    );
    assert!(
        answer.json["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("/data/0/spend"),
        "{}",
        answer.text
    );

    // No currency in the payload and none given: refused, never guessed; ?currency= supplies it.
    let mut no_currency = meta_row("c1", "s1", "a1", "2026-11-01", 10, 1, "1.00", 0);
    no_currency
        .as_object_mut()
        .map(|o| o.remove("account_currency"));
    let answer = send(
        &env.app,
        post(uri, Some(&ingest), page(vec![no_currency.clone()])),
    )
    .await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::BAD_REQUEST, "missing_currency"),
        "{}",
        answer.text
    );
    let answer = send(
        &env.app,
        post(
            &format!("{uri}?currency=EUR"),
            Some(&ingest),
            page(vec![no_currency]),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    let answer = send(
        &env.app,
        post(&format!("{uri}?currency=euro"), Some(&ingest), page(vec![])),
    )
    .await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::BAD_REQUEST, "invalid_parameter")
    );

    // 20 MB: over the limit, 413, nothing kept (not accepted for processing).
    let huge = vec![b' '; 20 * 1024 * 1024];
    let answer = send(&env.app, post(uri, Some(&ingest), huge.clone())).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        "{}",
        answer.text
    );
    let answer = send(&env.app, post("/v1/webhooks/meta", None, huge)).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);

    let answer = send(
        &env.app,
        post("/v1/pipelines/nope/reports", Some(&ingest), page(vec![])),
    )
    .await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::NOT_FOUND, "unknown_pipeline")
    );

    let letters = send(&env.app, get("/v1/dead-letters", Some(&ingest))).await;
    let codes: Vec<_> = letters.json["dead_letters"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|d| d["code"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(codes.len(), 4, "{codes:?}");
    for code in [
        "malformed_payload",
        "invalid_shape",
        "invalid_value",
        "missing_currency",
    ] {
        assert!(
            codes.iter().any(|c| c == code),
            "{code} missing from {codes:?}"
        );
    }

    // The plugin refused those payloads as not Meta's data: rejections, not
    // failures (which count traps and limits), in /v1/plugins and /metrics.
    // Malformed JSON, the wrong shape and `12,5` are the plugin's refusals;
    // the missing currency is the host's (after the plugin parsed the page).
    const REFUSED_BY_META: u64 = 3;
    let operator = token("demo", &[Role::Operator], 60);
    let plugins = send(&env.app, get("/v1/plugins", Some(&operator))).await;
    let meta = plugins.json["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "meta")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (meta["rejections"].as_u64(), meta["failures"].as_u64()),
        (Some(REFUSED_BY_META), Some(0)),
        "{meta}"
    );
    let metrics = send(&env.app, get("/metrics", Some(&operator))).await;
    let series = |name: &str| {
        metrics
            .text
            .lines()
            .find(|l| l.starts_with(name) && l.contains("plugin=\"meta\""))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    assert_eq!(
        (
            series("adpipe_plugin_rejections_total"),
            series("adpipe_plugin_failures_total")
        ),
        (Some(REFUSED_BY_META), Some(0)),
        "{}",
        metrics.text
    );

    // Query validation names the parameter.
    let viewer = token("demo", &[Role::Viewer], 60);
    for (query, param) in [
        ("to=2026-11-01", "from"),
        ("from=2026-11-01&to=2026-10-01", "to"),
        ("from=2026-13-01&to=2026-11-01", "from"),
        (
            "from=2026-11-01&to=2026-11-02&granularity=hour",
            "granularity",
        ),
        (
            "from=2026-11-01&to=2026-11-02&group_by=campaign",
            "group_by",
        ),
        ("from=2026-11-01&to=2026-11-02&metrics=ctr,bogus", "metrics"),
        ("from=2026-11-01&to=2026-11-02&colour=red", "colour"),
        ("from=2020-01-01&to=2026-11-02", "to"),
        // An empty list value is refused, not dropped (the schema's items
        // are enums and patterns an empty string does not match).
        ("from=2026-11-01&to=2026-11-02&order_by=", "order_by"),
        (
            "from=2026-11-01&to=2026-11-02&group_by=platform,",
            "group_by",
        ),
        ("from=2026-11-01&to=2026-11-02&metrics=", "metrics"),
        ("from=2026-11-01&to=2026-11-02&platform=", "platform"),
        (
            "from=2026-11-01&to=2026-11-02&campaign_id=c1&campaign_id=",
            "campaign_id",
        ),
        ("from=2026-11-01&to=2026-11-02&currency=,usd", "currency"),
        // Values are taken as written: ` platform` is no dimension.
        (
            "from=2026-11-01&to=2026-11-02&group_by=%20platform",
            "group_by",
        ),
    ] {
        let answer = send(
            &env.app,
            get(&format!("/v1/insights?{query}"), Some(&viewer)),
        )
        .await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::BAD_REQUEST, "invalid_parameter"),
            "{query}"
        );
        let message = answer.json["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.starts_with(&format!("`{param}`")),
            "{query}: {message}"
        );
    }
}

pub fn signed(secret: &str, body: &str) -> String {
    format!(
        "sha256={}",
        adpipe::pipeline::signature::hmac_hex(secret.as_bytes(), body.as_bytes())
    )
}

pub fn webhook(body: &str, signature: Option<&str>) -> axum::http::Request<axum::body::Body> {
    let mut b =
        axum::http::Request::post("/v1/webhooks/meta").header("content-type", "application/json");
    if let Some(s) = signature {
        b = b.header("x-hub-signature-256", s);
    }
    b.body(axum::body::Body::from(body.to_owned()))
        .expect("request")
}

pub fn leadgen(leadgen_id: &str, ad_id: &str, adgroup_id: &str) -> String {
    json!({"object": "page", "entry": [{"id": "4455", "time": 1_762_000_000, "changes": [
        {"field": "leadgen", "value": {"ad_id": ad_id, "adgroup_id": adgroup_id, "form_id": "77",
            "leadgen_id": leadgen_id, "created_time": 1_761_998_400, "page_id": "4455"}},
        {"field": "feed", "value": {"item": "status", "verb": "add"}}
    ]}]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_webhooks_verify_and_count_leads_once_through_the_hierarchy() {
    let env = start("HOOK").await;
    // Handshake.
    let uri = format!(
        "/v1/webhooks/meta?hub.mode=subscribe&hub.verify_token={}&hub.challenge=1158201444",
        env.verify
    );
    let answer = send(&env.app, get(&uri, None)).await;
    assert_eq!(
        (answer.status, answer.text.as_str()),
        (StatusCode::OK, "1158201444")
    );
    assert_eq!(answer.headers["content-type"], "text/plain; charset=utf-8");
    let answer = send(
        &env.app,
        get(
            "/v1/webhooks/meta?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
            None,
        ),
    )
    .await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::FORBIDDEN, "verify_token_mismatch")
    );
    let answer = send(&env.app, get("/v1/webhooks/meta?hub.mode=subscribe", None)).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::BAD_REQUEST, "invalid_handshake")
    );

    // Signatures. Real deliveries carry adgroup_id = ad_id: in Meta's legacy
    // naming an "adgroup" is the ad, so it must never be taken for an ad set.
    let body = leadgen("L1", "a9", "a9");
    let answer = send(&env.app, webhook(&body, None)).await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::UNAUTHORIZED, "invalid_signature")
    );
    let answer = send(
        &env.app,
        webhook(&body, Some(&signed("not-the-secret", &body))),
    )
    .await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::UNAUTHORIZED, "invalid_signature")
    );
    let tampered = body.replace("L1", "L2");
    let answer = send(
        &env.app,
        webhook(&tampered, Some(&signed(&env.secret, &body))),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "a body that is not the signed one is refused"
    );

    // A lead for an ad not known yet: kept, not shown.
    for _ in 0..3 {
        // Meta retries deliveries: the same lead three times counts once.
        let answer = send(&env.app, webhook(&body, Some(&signed(&env.secret, &body)))).await;
        assert_eq!(
            (answer.status, answer.json.clone()),
            (StatusCode::ACCEPTED, json!({"accepted": 1})),
            "{}",
            answer.text
        );
    }
    let second = leadgen("L2", "a9", "a9");
    assert_eq!(
        send(
            &env.app,
            webhook(&second, Some(&signed(&env.secret, &second)))
        )
        .await
        .status,
        StatusCode::ACCEPTED
    );
    let viewer = token("demo", &[Role::Viewer], 60);
    let query =
        "from=2025-11-01&to=2025-11-30&granularity=total&group_by=campaign_id&metrics=leads,spend";
    let answer = send(
        &env.app,
        get(&format!("/v1/insights?{query}"), Some(&viewer)),
    )
    .await;
    // `leads` is not a known metric until a lead has been stored; either way no rows yet.
    assert!(
        answer.json["rows"].as_array().is_none_or(|r| r.is_empty()),
        "{}",
        answer.text
    );

    // The report that reveals ad a9 → ad set s9 → campaign c9 places the leads.
    let ingest = token("demo", &[Role::Ingest], 60);
    let report = page(vec![meta_row(
        "c9",
        "s9",
        "a9",
        "2025-11-01",
        100,
        4,
        "2.50",
        0,
    )]);
    assert_eq!(
        send(
            &env.app,
            post("/v1/pipelines/meta/reports", Some(&ingest), report)
        )
        .await
        .status,
        StatusCode::ACCEPTED
    );
    let rows = insights(&env.app, &viewer, query).await;
    assert_eq!(
        rows,
        vec![
            json!({"platform": "meta", "campaign_id": "c9", "campaign_name": "Campaign c9", "currency": "USD", "leads": 2, "spend": 2.5})
        ]
    );
    let by_ad_group = insights(
        &env.app,
        &viewer,
        "from=2025-11-01&to=2025-11-30&granularity=total&group_by=ad_group_id&metrics=leads",
    )
    .await;
    assert_eq!(by_ad_group[0]["ad_group_id"], "s9");
    assert_eq!(by_ad_group[0]["leads"], 2);
}
