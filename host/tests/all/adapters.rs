//! Every adapter through wasmtime: each recorded fixture of each platform
//! parses to the same rows (field by field, string table included) inside the
//! sandbox as natively, and rejections keep their kind, path and message.

use std::time::Duration;

use adpipe::plugin::bindings::adapter::adpipe::plugin::types as wit;
use adpipe::plugin::{Adapter, CallError, Limits, Runtime};
use adpipe_plugin_sdk as sdk;

use crate::common::plugin_path;

fn component(name: &str) -> Adapter {
    Runtime::new()
        .expect("engine")
        .load_adapter(
            name,
            &plugin_path(name),
            Limits {
                time_limit: Duration::from_secs(5),
                memory_bytes: 256 << 20,
                fuel: None,
            },
        )
        .expect("load meta")
}

fn fixtures(plugin: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../plugins/adapters/{plugin}/tests/fixtures"));
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            (
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                std::fs::read(&p).expect("read"),
            )
        })
        .collect();
    out.sort();
    assert!(
        out.len() >= 5,
        "expected the recorded Meta fixtures in {}",
        dir.display()
    );
    out
}

fn kind(k: sdk::ErrorKind) -> wit::ErrorKind {
    match k {
        sdk::ErrorKind::Malformed => wit::ErrorKind::Malformed,
        sdk::ErrorKind::InvalidShape => wit::ErrorKind::InvalidShape,
        sdk::ErrorKind::InvalidValue => wit::ErrorKind::InvalidValue,
        sdk::ErrorKind::PlatformError => wit::ErrorKind::PlatformError,
        sdk::ErrorKind::MissingContext => wit::ErrorKind::MissingContext,
        sdk::ErrorKind::Unsupported => wit::ErrorKind::Unsupported,
    }
}

/// The sandbox's batch in the SDK's native shape, for an exact comparison.
fn to_sdk(b: &wit::RowBatch) -> sdk::RowBatch {
    let date = |d: wit::Date| sdk::Date {
        year: d.year,
        month: d.month,
        day: d.day,
    };
    sdk::RowBatch {
        strings: b.strings.clone(),
        rows: b
            .rows
            .iter()
            .map(|r| sdk::Row {
                kind: match r.kind {
                    wit::RowKind::Snapshot => sdk::RowKind::Snapshot,
                    wit::RowKind::Delta => sdk::RowKind::Delta,
                },
                account_id: r.account_id,
                campaign_id: r.campaign_id,
                campaign_name: r.campaign_name,
                ad_group_id: r.ad_group_id,
                ad_id: r.ad_id,
                date: date(r.date),
                hour: r.hour,
                currency: r.currency,
                impressions: r.impressions,
                clicks: r.clicks,
                spend_micros: r.spend_micros,
                conversions_micros: r.conversions_micros,
                conversion_value_micros: r.conversion_value_micros,
                observed_at_ms: r.observed_at_ms,
                dedup_key: r.dedup_key,
            })
            .collect(),
        extras: b
            .extras
            .iter()
            .map(|e| sdk::Extra {
                row: e.row,
                name: e.name,
                value_micros: e.value_micros,
            })
            .collect(),
        notices: b.notices.clone(),
        next_page: b.next_page.as_ref().map(|p| sdk::HttpRequest {
            method: p.method.clone(),
            url: p.url.clone(),
            query: p.query.clone(),
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
                assert_eq!(n, to_sdk(&w), "{plugin}/{name}");
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
        adpipe::plugin::SignatureScheme::HmacSha256Body(h) => {
            assert_eq!(
                (h.header.as_str(), h.prefix.as_str()),
                ("x-hub-signature-256", "sha256=")
            )
        }
        other => panic!("unexpected scheme {other:?}"),
    }
}
