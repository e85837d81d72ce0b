//! The API as its consumers use it (issue: generated clients): the OpenAPI
//! document's precision, metric discovery, names in answers, keyset pages,
//! strict and consistent parameters, and every error in the envelope.
//! scripts/api-consumer drives a client generated from the same document
//! against a real process; these tests pin each behaviour through the router.

use adpipe::app::App;
use adpipe::auth::Role;
use adpipe::config::PluginKind;
use axum::http::StatusCode;
use serde_json::Value;

use crate::api::{meta_row, push};
use crate::common::*;

/// Meta pipelines for `demo` (with both metric plugins) and `other`.
async fn start() -> (App, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut meta = pipeline("meta", "demo", "meta");
    meta.metrics = vec!["leads".into()];
    let mut leads = plugin("metrics-leads");
    leads.name = "leads".into();
    leads.kind = PluginKind::Metric;
    let mut config = config(
        &dir,
        vec![plugin("meta"), leads],
        vec![meta, pipeline("other-meta", "other", "meta")],
    );
    config.server.watch_plugins = false;
    config.api.max_page_rows = 500;
    (App::start(config).await.expect("start"), dir)
}

fn viewer() -> String {
    token("demo", &[Role::Viewer], 60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_precise_enough_for_generated_clients() {
    let (app, _dir) = start().await;
    let doc = send(&app, get("/openapi.json", None)).await;
    assert_eq!(doc.status, StatusCode::OK);
    let doc = doc.json;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"][0]["url"], "/");
    let mut responses = 0;
    let mut operation_ids = std::collections::HashSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("item") {
            let id = operation["operationId"].as_str().unwrap_or_default();
            assert!(
                operation_ids.insert(id.to_owned()),
                "{method} {path}: operationId `{id}` is not unique"
            );
            let parameters = operation.get("parameters");
            assert!(
                parameters.is_none_or(Value::is_array),
                "{method} {path} parameters: {parameters:?}"
            );
            for (status, response) in operation["responses"].as_object().expect("responses") {
                responses += 1;
                let description = response["description"].as_str().unwrap_or("");
                assert!(
                    !description.is_empty(),
                    "{method} {path} {status} has no description"
                );
                assert!(
                    response["headers"]["X-Request-Id"].is_object(),
                    "{method} {path} {status} documents X-Request-Id"
                );
                if status == "429" {
                    assert!(response["headers"]["Retry-After"].is_object());
                    assert!(response["headers"]["RateLimit-Remaining"].is_object());
                }
                if status == "401" {
                    assert!(response["headers"]["WWW-Authenticate"].is_object());
                }
            }
        }
    }
    assert!(responses > 100, "{responses}");
    // Every reference resolves (schemas named only by parameters included).
    let text = doc.to_string();
    for reference in text.split("\"#/components/").skip(1) {
        let path: Vec<&str> = reference
            .split('"')
            .next()
            .unwrap_or("")
            .split('/')
            .collect();
        assert!(
            doc["components"][path[0]][path.get(1).copied().unwrap_or("")].is_object(),
            "dangling reference #/components/{}",
            path.join("/")
        );
    }
    let insights = &doc["paths"]["/v1/insights"]["get"];
    let param = |name: &str| {
        insights["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no parameter {name}"))
    };
    assert_eq!(param("from")["schema"]["format"], "date");
    assert_eq!(param("from")["required"], true);
    // limit: what the handler enforces, the configured maximum included.
    assert_eq!(param("limit")["schema"]["minimum"], 1);
    assert_eq!(param("limit")["schema"]["maximum"], 500);
    let group_by = param("group_by");
    assert_eq!(
        (group_by["style"].as_str(), group_by["explode"].as_bool()),
        (Some("form"), Some(false))
    );
    assert_eq!(group_by["schema"]["type"], "array");
    let dimension = &doc["components"]["schemas"]["DimensionName"];
    assert_eq!(
        dimension["enum"].as_array().map(Vec::len),
        Some(5),
        "{dimension}"
    );
    let currency = &doc["components"]["schemas"]["CurrencyCode"];
    assert_eq!(currency["pattern"], "^[A-Za-z]{3}$");
    // The 200 documents its validators and caching.
    let ok = &insights["responses"]["200"]["headers"];
    assert!(
        ok["ETag"].is_object()
            && ok["Cache-Control"].is_object()
            && ok["RateLimit-Limit"].is_object(),
        "{ok}"
    );
    // The report body is the platform's JSON, not a string to double-encode.
    let body = &doc["paths"]["/v1/pipelines/{pipeline}/reports"]["post"]["requestBody"];
    let schema = &body["content"]["application/json"]["schema"];
    let schema = match schema["$ref"].as_str() {
        Some(reference) => {
            &doc["components"]["schemas"][reference.rsplit('/').next().expect("name")]
        }
        None => schema,
    };
    let branches: Vec<&Value> = schema["oneOf"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| &b["type"])
        .collect();
    assert_eq!(
        branches,
        [&Value::from("object"), &Value::from("array")],
        "{schema}"
    );
    // Both credentials; units in the row's descriptions.
    let schemes = &doc["components"]["securitySchemes"];
    assert!(schemes["bearer"].is_object() && schemes["api_key"].is_object());
    let row = &doc["components"]["schemas"]["InsightRow"]["properties"];
    assert!(
        row["spend"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("major units")),
        "{}",
        row["spend"]
    );
    assert!(row["ctr"]["description"]
        .as_str()
        .is_some_and(|d| d.contains("fraction")));
    assert!(row["campaign_name"].is_object() && row["partial"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listed_metric_is_accepted_even_before_any_data() {
    let (app, _dir) = start().await;
    let listed = send(&app, get("/v1/metrics", Some(&viewer()))).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    let metrics = listed.json["metrics"].as_array().expect("metrics").clone();
    let find = |name: &str| metrics.iter().find(|m| m["name"] == name).cloned();
    let spend = find("spend").expect("spend listed");
    assert_eq!(
        (spend["unit"].as_str(), spend["kind"].as_str()),
        (Some("currency"), Some("base"))
    );
    let ctr = find("ctr").expect("ctr listed");
    assert_eq!(
        (ctr["unit"].as_str(), ctr["derived"].as_bool()),
        (Some("fraction"), Some(true))
    );
    // Declared by the Meta adapter: known before the tenant has any lead.
    assert_eq!(find("leads").expect("leads listed")["kind"], "extra");
    // A metric plugin's metric, with its unit.
    let cpl = find("cost_per_lead").expect("plugin metric listed");
    assert_eq!(
        (
            cpl["kind"].as_str(),
            cpl["unit"].as_str(),
            cpl["plugin"].as_str()
        ),
        (Some("plugin"), Some("currency"), Some("leads"))
    );
    let names: Vec<&str> = metrics.iter().filter_map(|m| m["name"].as_str()).collect();
    let uri = format!(
        "/v1/insights?from=2026-11-01&to=2026-11-30&granularity=total&metrics={}",
        names.join(",")
    );
    let answer = send(&app, get(&uri, Some(&viewer()))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    // Another tenant's catalog has no metric plugin it does not use.
    let other = send(
        &app,
        get("/v1/metrics", Some(&token("other", &[Role::Viewer], 60))),
    )
    .await;
    assert!(!other.text.contains("cost_per_lead"), "{}", other.text);
    let refused = send(
        &app,
        get(
            "/v1/insights?from=2026-11-01&to=2026-11-30&metrics=cost_per_lead",
            Some(&token("other", &[Role::Viewer], 60)),
        ),
    )
    .await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::BAD_REQUEST, "invalid_parameter")
    );
    assert!(refused.text.contains("GET /v1/metrics"), "{}", refused.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_carry_names_and_partial_buckets_are_marked() {
    let (app, _dir) = start().await;
    let mut row = meta_row("c1", "s1", "a1", "2026-11-02", 100, 5, "10.00", 0);
    row["adset_name"] = "Ad set one".into();
    row["ad_name"] = "Ad one".into();
    push(&app, vec![row]).await;
    let answer = send(
        &app,
        get("/v1/insights?from=2026-11-01&to=2026-11-30&granularity=total&group_by=campaign_id,ad_group_id,ad_id&metrics=spend", Some(&viewer())),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let row = &answer.json["rows"][0];
    assert_eq!(row["campaign_name"], "Campaign c1", "{row}");
    assert_eq!(row["ad_group_name"], "Ad set one", "{row}");
    assert_eq!(row["ad_name"], "Ad one", "{row}");
    assert!(
        row.get("partial").is_none(),
        "total rows have no bucket: {row}"
    );
    // Grouped by account only: no names asked for, none given.
    let answer = send(
        &app,
        get(
            "/v1/insights?from=2026-11-01&to=2026-11-30&group_by=account_id&metrics=spend",
            Some(&viewer()),
        ),
    )
    .await;
    assert!(
        answer.json["rows"][0].get("campaign_name").is_none(),
        "{}",
        answer.text
    );
    // 2026-11-02 is a Monday: the week from 2026-11-02 is whole from the 2nd to
    // the 8th, partial when the range ends on the 4th; November is partial.
    for (to, partial) in [("2026-11-08", false), ("2026-11-04", true)] {
        let uri = format!("/v1/insights?from=2026-11-02&to={to}&granularity=week&metrics=spend");
        let answer = send(&app, get(&uri, Some(&viewer()))).await;
        assert_eq!(
            answer.json["rows"][0]["date"], "2026-11-02",
            "{}",
            answer.text
        );
        assert_eq!(
            answer.json["rows"][0]["partial"], partial,
            "to={to}: {}",
            answer.text
        );
    }
    // A week that starts before `from` sums only the days inside, marked partial.
    push(
        &app,
        vec![meta_row("c1", "s1", "a1", "2026-11-05", 100, 5, "4.00", 0)],
    )
    .await;
    let answer = send(
        &app,
        get(
            "/v1/insights?from=2026-11-04&to=2026-11-08&granularity=week&metrics=spend",
            Some(&viewer()),
        ),
    )
    .await;
    let row = &answer.json["rows"][0];
    assert_eq!(
        (
            row["date"].as_str(),
            row["partial"].as_bool(),
            row["spend"].as_f64()
        ),
        (Some("2026-11-02"), Some(true), Some(4.0)),
        "{}",
        answer.text
    );
    let answer = send(
        &app,
        get(
            "/v1/insights?from=2026-11-02&to=2026-11-30&granularity=month&metrics=spend",
            Some(&viewer()),
        ),
    )
    .await;
    assert_eq!(
        (
            answer.json["rows"][0]["date"].as_str(),
            answer.json["rows"][0]["partial"].as_bool()
        ),
        (Some("2026-11-01"), Some(true))
    );
}

fn rows_of(answer: &Answer) -> Vec<String> {
    answer.json["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["campaign_id"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_never_repeat_a_row_and_a_stale_metric_order_answers_409() {
    let (app, _dir) = start().await;
    let day = "2026-11-03";
    push(
        &app,
        ["c2", "c4", "c6"]
            .iter()
            .enumerate()
            .map(|(i, c)| {
                meta_row(
                    c,
                    "s",
                    &format!("a{c}"),
                    day,
                    100,
                    1,
                    &format!("{}.00", i + 1),
                    0,
                )
            })
            .collect(),
    )
    .await;
    let base = "/v1/insights?from=2026-11-01&to=2026-11-30&granularity=total&group_by=campaign_id&metrics=spend";
    let first = send(&app, get(&format!("{base}&limit=2"), Some(&viewer()))).await;
    assert_eq!(rows_of(&first), ["c2", "c4"]);
    assert_eq!(first.json["total"], 3);
    let cursor = first.json["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    // c1 (before the cursor) and c5 arrive between the pages.
    push(
        &app,
        vec![
            meta_row("c1", "s", "ac1", day, 100, 1, "9.00", 0),
            meta_row("c5", "s", "ac5", day, 100, 1, "8.00", 0),
        ],
    )
    .await;
    let second = send(
        &app,
        get(&format!("{base}&limit=2&cursor={cursor}"), Some(&viewer())),
    )
    .await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    assert_eq!(rows_of(&second), ["c5", "c6"], "no row of page 1 again");
    assert_eq!(second.json["total"], 5);
    // Ordered by a metric, a cursor of older data is refused with 409.
    let by_spend = format!("{base}&order_by=-spend&limit=2");
    let first = send(&app, get(&by_spend, Some(&viewer()))).await;
    let cursor = first.json["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let same = send(
        &app,
        get(&format!("{by_spend}&cursor={cursor}"), Some(&viewer())),
    )
    .await;
    assert_eq!(
        same.status,
        StatusCode::OK,
        "unchanged data pages on: {}",
        same.text
    );
    push(
        &app,
        vec![meta_row("c7", "s", "ac7", day, 100, 1, "1.50", 0)],
    )
    .await;
    let stale = send(
        &app,
        get(&format!("{by_spend}&cursor={cursor}"), Some(&viewer())),
    )
    .await;
    assert_eq!(
        (stale.status, stale.code()),
        (StatusCode::CONFLICT, "cursor_stale"),
        "{}",
        stale.text
    );
    // Campaigns page the same way, with the same filters.
    let page1 = send(
        &app,
        get("/v1/campaigns?limit=4&currency=usd", Some(&viewer())),
    )
    .await;
    assert_eq!(page1.status, StatusCode::OK, "{}", page1.text);
    assert_eq!(
        (
            page1.json["campaigns"].as_array().map(Vec::len),
            page1.json["total"].as_u64()
        ),
        (Some(4), Some(6))
    );
    let cursor = page1.json["next_cursor"].as_str().expect("cursor");
    let page2 = send(
        &app,
        get(
            &format!("/v1/campaigns?limit=4&currency=usd&cursor={cursor}"),
            Some(&viewer()),
        ),
    )
    .await;
    let ids: Vec<&str> = page1.json["campaigns"]
        .as_array()
        .into_iter()
        .chain(page2.json["campaigns"].as_array())
        .flatten()
        .filter_map(|c| c["campaign_id"].as_str())
        .collect();
    assert_eq!(ids, ["c1", "c2", "c4", "c5", "c6", "c7"]);
    assert_eq!(page2.json["next_cursor"], Value::Null);
    let names = send(&app, get("/v1/campaigns?campaign_id=c5", Some(&viewer()))).await;
    assert_eq!(
        names.json["campaigns"][0]["name"], "Campaign c5",
        "{}",
        names.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_are_strict_and_consistent_on_every_route() {
    let (app, _dir) = start().await;
    push(
        &app,
        vec![meta_row("c1", "s", "a1", "2026-11-03", 100, 10, "5.00", 0)],
    )
    .await;
    let viewer = viewer();
    let admin = token("demo", &[Role::Admin], 60);
    for (uri, who, name) in [
        ("/v1/campaigns?campaign=c1", Some(&viewer), "campaign"),
        (
            "/v1/insights?from=2026-11-01&to=2026-11-30&form=x",
            Some(&viewer),
            "form",
        ),
        ("/v1/whoami?verbose=1", Some(&viewer), "verbose"),
        (
            "/v1/dead-letters?limit=5&pipeline=meta",
            Some(&admin),
            "pipeline",
        ),
        ("/healthz?probe=1", None, "probe"),
    ] {
        let answer = send(&app, get(uri, who.map(String::as_str))).await;
        assert_eq!(
            (answer.status, answer.code()),
            (StatusCode::BAD_REQUEST, "invalid_parameter"),
            "{uri}: {}",
            answer.text
        );
        assert!(
            answer.text.contains(&format!("`{name}`")),
            "{uri}: {}",
            answer.text
        );
    }
    // A scalar given twice is refused; a list given twice is merged.
    let twice = send(
        &app,
        get(
            "/v1/insights?from=2026-11-01&from=2026-11-02&to=2026-11-30",
            Some(&viewer),
        ),
    )
    .await;
    assert_eq!(twice.status, StatusCode::BAD_REQUEST, "{}", twice.text);
    let merged = send(&app, get("/v1/insights?from=2026-11-01&to=2026-11-30&granularity=total&metrics=spend&metrics=clicks", Some(&viewer))).await;
    assert_eq!(merged.status, StatusCode::OK, "{}", merged.text);
    let row = merged.json["rows"][0].as_object().expect("row");
    assert_eq!(
        (row["spend"].as_f64(), row["clicks"].as_i64()),
        (Some(5.0), Some(10)),
        "{row:?}"
    );
    // Filter values: an unknown platform is refused, currencies in any case.
    let bing = send(
        &app,
        get(
            "/v1/insights?from=2026-11-01&to=2026-11-30&platform=bing",
            Some(&viewer),
        ),
    )
    .await;
    assert_eq!(bing.status, StatusCode::BAD_REQUEST, "{}", bing.text);
    assert!(
        bing.text.contains("meta"),
        "names the known platforms: {}",
        bing.text
    );
    let lower = send(&app, get("/v1/insights?from=2026-11-01&to=2026-11-30&granularity=total&currency=usd&metrics=spend", Some(&viewer))).await;
    assert_eq!(lower.json["rows"][0]["spend"], 5.0, "{}", lower.text);
    let bad = send(
        &app,
        get(
            "/v1/insights?from=2026-11-01&to=2026-11-30&currency=dollars",
            Some(&viewer),
        ),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    // Webhook routes take the platform's own parameters.
    let handshake = send(
        &app,
        get(
            "/v1/webhooks/meta?hub.mode=subscribe&hub.challenge=1&hub.verify_token=x&extra=1",
            None,
        ),
    )
    .await;
    assert_ne!(handshake.code(), "invalid_parameter", "{}", handshake.text);
    // Every error in the envelope: 405 with Allow, 401 with a challenge.
    let not_allowed = send(&app, request("PUT", "/v1/insights", Some(&viewer))).await;
    assert_eq!(
        (not_allowed.status, not_allowed.code()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        "{}",
        not_allowed.text
    );
    assert_eq!(
        not_allowed
            .headers
            .get("allow")
            .and_then(|v| v.to_str().ok()),
        Some("GET,HEAD")
    );
    let unauthenticated = send(&app, get("/v1/metrics", None)).await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        unauthenticated
            .headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer realm=\"adpipe\"")
    );
    let wrong = send(&app, get("/v1/metrics", Some("not-a-token"))).await;
    assert!(wrong
        .headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("invalid_token")));
}
