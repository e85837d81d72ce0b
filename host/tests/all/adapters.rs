//! Every adapter through wasmtime: each recorded fixture of each platform
//! parses to the same rows (field by field, string table included) inside the
//! sandbox as natively, and rejections keep their kind, path and message.

use std::time::Duration;

use adpipe::plugin::bindings::adapter::adpipe::plugin::types as wit;
use adpipe::plugin::{CallError, Limits, Runtime};
use adpipe_plugin_sdk as sdk;

use crate::common::plugin_path;
use crate::parity::{component, kind};

/// A plugin's recorded JSON fixtures (at least five).
fn fixtures(plugin: &str) -> Vec<(String, Vec<u8>)> {
    let json: Vec<_> = crate::parity::fixtures(plugin, 5)
        .into_iter()
        .filter(|(name, _)| name.ends_with(".json"))
        .collect();
    assert!(
        json.len() >= 5,
        "expected the recorded {plugin} JSON fixtures"
    );
    json
}

/// The sandbox's columnar batch in the SDK's native shape, for an exact
/// comparison (string index 0, `""`, reads as absent on both sides).
fn to_sdk(b: &wit::RowBatch) -> sdk::RowBatch {
    let c = &b.rows;
    let opt = |i: u32| (i != 0).then_some(i);
    let rows = (0..c.kind.len())
        .map(|i| {
            let day =
                sdk::Date::from_days_since_epoch(i64::from(c.day[i])).expect("a calendar day");
            let (hour, event_at_ms) = match c.bucket[i] {
                wit::BucketKind::Daily => (None, None),
                wit::BucketKind::Hourly => (Some(c.hour[i]), None),
                wit::BucketKind::Event => (None, Some(c.event_at_ms[i])),
            };
            sdk::Row {
                kind: match c.kind[i] {
                    wit::RowKind::Snapshot => sdk::RowKind::Snapshot,
                    wit::RowKind::Delta => sdk::RowKind::Delta,
                },
                account_id: opt(c.account_id[i]),
                campaign_id: opt(c.campaign_id[i]),
                campaign_name: opt(c.campaign_name[i]),
                ad_group_id: opt(c.ad_group_id[i]),
                ad_group_name: opt(c.ad_group_name[i]),
                ad_id: opt(c.ad_id[i]),
                ad_name: opt(c.ad_name[i]),
                breakdown: opt(c.breakdown[i]),
                date: day,
                hour,
                event_at_ms,
                currency: opt(c.currency[i]),
                impressions: c.impressions[i],
                clicks: c.clicks[i],
                spend_micros: c.spend_micros[i],
                conversions_micros: c.conversions_micros[i],
                conversion_value_micros: c.conversion_value_micros[i],
                observed_at_ms: (c.observed_at_ms[i] != 0).then_some(c.observed_at_ms[i]),
                dedup_key: opt(c.dedup_key[i]),
            }
        })
        .collect();
    let e = &b.extras;
    sdk::RowBatch {
        strings: b.strings.clone(),
        rows,
        extras: (0..e.row.len())
            .map(|j| sdk::Extra {
                row: e.row[j],
                name: e.name[j],
                value_micros: e.value_micros[j],
            })
            .collect(),
        notices: b.notices.clone(),
        next_page: b.next_page.as_ref().map(|p| sdk::HttpRequest {
            method: p.method.clone(),
            url: p.url.clone(),
            // Compared as the wire query below.
            query: vec![],
            headers: p.headers.clone(),
            body: p.body.clone(),
            credential: match &p.credential {
                wit::CredentialSlot::None => sdk::CredentialSlot::None,
                wit::CredentialSlot::Bearer => sdk::CredentialSlot::Bearer,
                wit::CredentialSlot::Header(h) => sdk::CredentialSlot::Header(h.clone()),
                wit::CredentialSlot::Query(q) => sdk::CredentialSlot::Query(q.clone()),
            },
        }),
    }
}

/// A native batch as it crosses the interface: an interned `""` is absent,
/// and the next page's query is compared as its wire string.
fn as_crossed(mut b: sdk::RowBatch) -> (sdk::RowBatch, Option<String>) {
    let none_if_empty = |i: &mut Option<u32>| {
        if *i == Some(0) {
            *i = None;
        }
    };
    for r in &mut b.rows {
        for field in [
            &mut r.account_id,
            &mut r.campaign_id,
            &mut r.campaign_name,
            &mut r.ad_group_id,
            &mut r.ad_group_name,
            &mut r.ad_id,
            &mut r.ad_name,
            &mut r.breakdown,
            &mut r.currency,
            &mut r.dedup_key,
        ] {
            none_if_empty(field);
        }
        if r.event_at_ms.is_some() {
            // An event row's day is the host's to choose (the pipeline's time zone).
            r.hour = None;
        }
    }
    let query = b.next_page.as_mut().map(|p| {
        let q = p.query_string();
        p.query.clear();
        q
    });
    (b, query)
}

/// Parse every fixture of `plugin` natively (through `A`) and in the sandbox; compare.
fn parity<A: sdk::Adapter>(plugin: &str) -> usize {
    let component = component(plugin);
    assert_eq!(component.info().name, plugin);
    assert_eq!(component.info().platform, A::describe().platform);
    assert_eq!(component.info().version, A::describe().version);
    let native_ctx = sdk::ParseContext {
        currency: Some("USD".into()),
        account_id: Some("42".into()),
        ..Default::default()
    };
    let wasm_ctx = wit::ParseContext {
        options: vec![],
        account_id: Some("42".into()),
        currency: Some("USD".into()),
        received_at_ms: 0,
    };
    let mut parsed_rows = 0;
    for (name, bytes) in fixtures(plugin) {
        let webhook = name.starts_with("webhook");
        let (native, wasm) = if webhook {
            let request = sdk::WebhookRequest {
                query: vec![],
                headers: vec![],
                body: bytes.clone(),
            };
            let wasm_request = adpipe::plugin::WebhookRequest {
                query: vec![],
                headers: vec![],
                body: bytes.clone(),
            };
            (
                A::parse_webhook(&request, &native_ctx),
                component.parse_webhook(&wasm_request, &wasm_ctx),
            )
        } else {
            (
                A::parse_report(&bytes, &native_ctx),
                component.parse_report(&bytes, &wasm_ctx),
            )
        };
        match (native, wasm) {
            (Ok(n), Ok(w)) => {
                parsed_rows += n.rows.len();
                let (native, native_query) = as_crossed(n);
                assert_eq!(native, to_sdk(&w), "{plugin}/{name}");
                assert_eq!(
                    native_query,
                    w.next_page.as_ref().map(|p| p.query.clone()),
                    "{plugin}/{name}: next page query"
                );
            }
            (Err(n), Err(CallError::Rejected(w))) => {
                assert_eq!(
                    (kind(n.kind), n.path, n.message),
                    (w.kind, w.path, w.message),
                    "{plugin}/{name}"
                );
            }
            (n, w) => panic!("{plugin}/{name}: native {n:?} vs wasm {w:?}"),
        }
    }
    parsed_rows
}

#[test]
fn every_fixture_parses_identically_in_the_sandbox_and_natively() {
    assert!(parity::<adpipe_plugin_meta::Meta>("meta") > 10);
    assert!(parity::<adpipe_plugin_google::Google>("google") > 10);
    assert!(parity::<adpipe_plugin_linkedin::LinkedIn>("linkedin") > 10);
    assert!(parity::<adpipe_plugin_tiktok::TikTok>("tiktok") > 10);
}

#[test]
fn handshake_and_describe_through_the_sandbox() {
    let meta = component("meta");
    let plan = meta
        .handshake(&[
            ("hub.mode".into(), "subscribe".into()),
            ("hub.verify_token".into(), "tok".into()),
            ("hub.challenge".into(), "12345".into()),
        ])
        .expect("handshake");
    match plan {
        adpipe::plugin::HandshakePlan::EchoIfToken(e) => {
            assert_eq!((e.token.as_str(), e.challenge.as_str()), ("tok", "12345"))
        }
        other => panic!("unexpected plan {other:?}"),
    }
    match &meta.info().signature {
        adpipe::plugin::SignatureScheme::HmacSha256(h) => {
            assert_eq!(
                (
                    h.header.as_str(),
                    h.header_prefix.as_str(),
                    h.signed_prefix.as_str()
                ),
                ("x-hub-signature-256", "sha256=", "")
            )
        }
        other => panic!("unexpected scheme {other:?}"),
    }
    assert_eq!(meta.abi(), adpipe::plugin::Abi::V0_2);
    assert_eq!(meta.info().api_versions[0].name, "v27.0");
    assert!(meta.info().extra_metrics.contains(&"leads".to_owned()));
    match &component("linkedin").info().signature {
        adpipe::plugin::SignatureScheme::HmacSha256(h) => {
            assert_eq!(
                h.signed_prefix, "hmacsha256=",
                "LinkedIn signs the prefixed body"
            )
        }
        other => panic!("unexpected scheme {other:?}"),
    }
}

/// The Meta adapter as built against `adpipe:plugin@0.1.0` (committed when the
/// interface moved to 0.2.0) still loads, and every fixture parses to the same
/// rows as the current build, except what 0.1.0 could not carry (names of ad
/// sets and ads, breakdown keys, event instants).
#[test]
fn a_0_1_0_component_still_loads_and_parses_like_the_current_one() {
    let limits = Limits {
        time_limit: Duration::from_secs(5),
        memory_bytes: 256 << 20,
        fuel: None,
    };
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/plugins/meta-0.1.0.wasm");
    let old = Runtime::new()
        .expect("engine")
        .load_adapter("meta", &fixture, limits)
        .expect("a 0.1.0 component loads");
    assert_eq!(old.abi(), adpipe::plugin::Abi::V0_1);
    assert_eq!(old.info().platform, "meta");
    assert!(old.info().api_versions.is_empty(), "0.1.0 declares none");
    match &old.info().signature {
        adpipe::plugin::SignatureScheme::HmacSha256(h) => {
            assert_eq!(
                (h.header_prefix.as_str(), h.signed_prefix.as_str()),
                ("sha256=", "")
            )
        }
        other => panic!("unexpected scheme {other:?}"),
    }
    let new = component("meta");
    let ctx = wit::ParseContext {
        options: vec![],
        account_id: Some("42".into()),
        currency: Some("USD".into()),
        received_at_ms: 0,
    };
    let mut compared = 0;
    for (name, bytes) in fixtures("meta") {
        let (a, b) = if name.starts_with("webhook") {
            let request = adpipe::plugin::WebhookRequest {
                query: vec![],
                headers: vec![],
                body: bytes.clone(),
            };
            (
                old.parse_webhook(&request, &ctx),
                new.parse_webhook(&request, &ctx),
            )
        } else {
            (
                old.parse_report(&bytes, &ctx),
                new.parse_report(&bytes, &ctx),
            )
        };
        match (a, b) {
            (Ok(a), Ok(b)) => {
                let (a, b) = (to_sdk(&a), to_sdk(&b));
                assert_eq!(a.rows.len(), b.rows.len(), "{name}");
                for (x, y) in a.rows.iter().zip(&b.rows) {
                    let s =
                        |batch: &sdk::RowBatch, i: Option<u32>| i.map(|i| batch.str(i).to_owned());
                    assert_eq!(
                        (
                            x.kind,
                            s(&a, x.campaign_id),
                            s(&a, x.ad_id),
                            s(&a, x.currency)
                        ),
                        (
                            y.kind,
                            s(&b, y.campaign_id),
                            s(&b, y.ad_id),
                            s(&b, y.currency)
                        ),
                        "{name}"
                    );
                    assert_eq!(
                        (
                            x.impressions,
                            x.clicks,
                            x.spend_micros,
                            x.conversions_micros
                        ),
                        (
                            y.impressions,
                            y.clicks,
                            y.spend_micros,
                            y.conversions_micros
                        ),
                        "{name}"
                    );
                    if y.event_at_ms.is_none() {
                        assert_eq!((x.date, x.hour), (y.date, y.hour), "{name}");
                    }
                    compared += 1;
                }
            }
            (Err(CallError::Rejected(a)), Err(CallError::Rejected(b))) => {
                assert_eq!((a.kind, a.path), (b.kind, b.path), "{name}")
            }
            (a, b) => panic!("{name}: 0.1.0 {a:?} vs 0.2.0 {b:?}"),
        }
    }
    assert!(compared > 10, "compared {compared} rows");
}

#[test]
fn plugin_test_output_names_outcomes_by_their_api_codes() {
    // `adpipe plugin test` over a folder: Meta's error envelope and a junk
    // body, each shown with the code the API would answer, not a Rust name.
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/adapters/meta/tests/fixtures/insights_error.json");
    std::fs::copy(&meta, dir.path().join("error.json")).expect("copy fixture");
    std::fs::write(dir.path().join("junk.json"), "{\"data\": [").expect("write junk");
    let results = adpipe::plugin::authoring::test_fixtures(
        &plugin_path("meta"),
        dir.path(),
        &adpipe::plugin::authoring::FixtureRun::default(),
    )
    .expect("fixtures run");
    let codes: Vec<&str> = results
        .iter()
        .map(|r| r.output["error"]["code"].as_str().unwrap_or("no code"))
        .collect();
    assert_eq!(
        codes,
        ["platform_error", "malformed_payload"],
        "{results:?}"
    );
    assert!(results
        .iter()
        .all(|r| r.output["error"].get("kind").is_none()));
}

#[test]
fn plugin_test_takes_pipeline_options_checked_like_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let page = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/adapters/meta/tests/fixtures/insights_ad_page1.json");
    std::fs::copy(&page, dir.path().join("page.json")).expect("copy fixture");
    let run = |options: &[(&str, &str)]| {
        adpipe::plugin::authoring::test_fixtures(
            &plugin_path("meta"),
            dir.path(),
            &adpipe::plugin::authoring::FixtureRun {
                options: options
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            },
        )
    };
    let extras = |options: &[(&str, &str)]| -> Vec<String> {
        let results = run(options).expect("runs");
        let mut names: Vec<String> = results[0].output["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| {
                r["extras"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k.clone())
            })
            .collect();
        names.sort();
        names.dedup();
        names
    };
    // The option reaches the plugin: only the named action type is kept.
    assert_eq!(
        extras(&[("extra_action_types", "link_click")]),
        ["actions_link_click"]
    );
    assert_eq!(extras(&[("extra_action_types", "lead")]), ["actions_lead"]);
    assert_ne!(extras(&[]), ["actions_link_click"], "{:?}", extras(&[]));
    // A misspelled option is set aside with a warning, as `serve` does
    // (`adpipe check` refuses it): the run equals the run without it.
    let misspelled = run(&[("extra_action_type", "link_click")]).expect("runs, warned");
    let plain = run(&[]).expect("runs");
    assert_eq!(misspelled[0].output, plain[0].output);
    // A value the adapter cannot take is refused, naming what it takes.
    let error = run(&[("api_version", "v1")])
        .expect_err("unknown version")
        .to_string();
    assert!(error.contains("`v1` is not a meta API version"), "{error}");
}

/// `adpipe plugin test --pull`: the plan a scheduled pull would send, then
/// recorded responses fed in order, next pages followed as the host does.
#[test]
fn plugin_test_plans_a_pull_and_feeds_recorded_responses() {
    use adpipe::plugin::authoring::{test_pull, PullTest};
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/adapters/meta/tests/fixtures");
    let recorded = tempfile::tempdir().expect("tempdir");
    for (from, to) in [
        ("insights_ad_page1.json", "1.json"),
        ("insights_ad_page2.json", "2.json"),
    ] {
        std::fs::copy(fixtures.join(from), recorded.path().join(to)).expect("copy");
    }
    let day = |d| adpipe::plugin::Date {
        year: 2026,
        month: 11,
        day: d,
    };
    let mut run = PullTest {
        account_id: "1234567890".into(),
        since: day(1),
        until: day(2),
        base_url: None,
        responses: None,
        currency: None,
        options: vec![],
    };
    // Plan only: one request, the credential's place shown, never a value.
    let planned = test_pull(&plugin_path("meta"), &run).expect("plan");
    assert_eq!(planned.len(), 1, "{planned:?}");
    let url = planned[0].request["url"].as_str().unwrap_or_default();
    assert!(
        url.starts_with("https://graph.facebook.com/v27.0/act_1234567890/insights?")
            && url.contains("2026-11-01")
            && url.contains("2026-11-02"),
        "{url}"
    );
    assert!(planned[0].response.is_none() && planned[0].output.is_none());
    // Fed: page 1's rows and its next page, requested and fed page 2.
    run.responses = Some(recorded.path().to_owned());
    let steps = test_pull(&plugin_path("meta"), &run).expect("pull");
    assert_eq!(steps.len(), 2, "{steps:?}");
    let rows = |i: usize| {
        steps[i]
            .output
            .as_ref()
            .and_then(|o| o["rows"].as_array())
            .map_or(0, Vec::len)
    };
    assert_eq!((rows(0), rows(1)), (6, 4), "{steps:?}");
    assert!(
        steps[1].request["url"]
            .as_str()
            .is_some_and(|u| u.contains("after=NQZDZD")),
        "{:?}",
        steps[1].request
    );
    assert!(steps
        .iter()
        .all(|s| s.output.as_ref().is_some_and(|o| o.get("error").is_none())));
}

/// Every shipped adapter's component stays under 1 MB (smaller components
/// compile, cache and reload faster; `profile.plugin` strips debug info).
#[test]
fn shipped_adapter_components_are_under_one_megabyte() {
    for name in [
        "meta",
        "google",
        "linkedin",
        "tiktok",
        "pinterest",
        "microsoft",
    ] {
        let size = std::fs::metadata(plugin_path(name)).expect("built").len();
        assert!(size <= 1_000_000, "{name}.wasm is {size} bytes");
    }
}

/// The two platforms written the tutorial's way are built by `adpipe plugin
/// build` (here with the repository's `plugin` profile) into exactly the
/// components `scripts/build-plugins` ships, each under 1 MB.
#[test]
fn the_new_platforms_are_built_by_plugin_build() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = tempfile::tempdir().expect("tempdir");
    for name in ["pinterest", "microsoft"] {
        let installed = out.path().join(format!("{name}.wasm"));
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_adpipe"))
            .args(["plugin", "build"])
            .arg(root.join("plugins/adapters").join(name))
            .args(["--profile", "plugin", "--out"])
            .arg(&installed)
            .output()
            .expect("run adpipe plugin build");
        let said = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{said}");
        assert!(
            said.contains(&format!("built {name} ")) && said.contains(" KB"),
            "{said}"
        );
        let built = std::fs::read(&installed).expect("installed");
        assert!(built.len() <= 1_000_000, "{name}: {} bytes", built.len());
        assert!(
            built == std::fs::read(plugin_path(name)).expect("shipped"),
            "{name}: plugin build and scripts/build-plugins disagree"
        );
    }
}
