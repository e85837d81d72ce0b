//! Helpers of the adapter parity tests written the tutorial's way (Pinterest,
//! Microsoft): a batch, a planned request or an error viewed the same way
//! whether it came from the native crate or through wasmtime, so the two can
//! be compared as JSON.

use std::time::Duration;

use adpipe::plugin::bindings::adapter::adpipe::plugin::types as wit;
use adpipe::plugin::{Adapter, Limits, Runtime};
use adpipe_plugin_sdk as sdk;
use serde_json::{json, Value};

use crate::common::plugin_path;

/// The built component `name` (`dist/plugins/<name>.wasm`) in wasmtime.
pub(crate) fn component(name: &str) -> Adapter {
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
        .unwrap_or_else(|e| panic!("load {name}: {e}"))
}

/// The component describes itself as the native crate does: name, platform,
/// version, allowed hosts, options with their defaults; its API versions.
pub(crate) fn describes_alike<A: sdk::Adapter>(
    component: &Adapter,
    name: &str,
    api_versions: &[&str],
) {
    let (info, native) = (component.info(), A::describe());
    assert_eq!(
        (
            info.name.as_str(),
            info.platform.as_str(),
            info.version.as_str()
        ),
        (name, name, native.version.as_str())
    );
    assert_eq!(info.allowed_hosts, native.allowed_hosts);
    let options = |o: &[(String, Option<String>)]| o.to_vec();
    assert_eq!(
        options(
            &info
                .options
                .iter()
                .map(|o| (o.name.clone(), o.default.clone()))
                .collect::<Vec<_>>()
        ),
        options(
            &native
                .options
                .iter()
                .map(|o| (o.name.clone(), o.default.clone()))
                .collect::<Vec<_>>()
        )
    );
    let versions: Vec<&str> = info.api_versions.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(versions, api_versions);
}

/// Every file of `plugin`'s `tests/fixtures` (whatever its format), sorted
/// by name; at least `at_least` of them.
pub(crate) fn fixtures(plugin: &str, at_least: usize) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../plugins/adapters/{plugin}/tests/fixtures"));
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .map(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, std::fs::read(&p).expect("read"))
        })
        .collect();
    out.sort();
    assert!(
        out.len() >= at_least,
        "expected the {plugin} fixtures in {}",
        dir.display()
    );
    out
}

pub(crate) fn kind(k: sdk::ErrorKind) -> wit::ErrorKind {
    match k {
        sdk::ErrorKind::Malformed => wit::ErrorKind::Malformed,
        sdk::ErrorKind::InvalidShape => wit::ErrorKind::InvalidShape,
        sdk::ErrorKind::InvalidValue => wit::ErrorKind::InvalidValue,
        sdk::ErrorKind::PlatformError => wit::ErrorKind::PlatformError,
        sdk::ErrorKind::MissingContext => wit::ErrorKind::MissingContext,
        sdk::ErrorKind::Unsupported => wit::ErrorKind::Unsupported,
    }
}

pub(crate) fn native_credential(c: &sdk::CredentialSlot) -> String {
    match c {
        sdk::CredentialSlot::None => "none".into(),
        sdk::CredentialSlot::Bearer => "bearer".into(),
        sdk::CredentialSlot::Header(h) => format!("header:{h}"),
        sdk::CredentialSlot::Query(q) => format!("query:{q}"),
    }
}

pub(crate) fn wasm_credential(c: &wit::CredentialSlot) -> String {
    match c {
        wit::CredentialSlot::None => "none".into(),
        wit::CredentialSlot::Bearer => "bearer".into(),
        wit::CredentialSlot::Header(h) => format!("header:{h}"),
        wit::CredentialSlot::Query(q) => format!("query:{q}"),
    }
}

pub(crate) fn native_request(r: &sdk::HttpRequest) -> Value {
    json!({"method": r.method, "url": r.url, "query": r.query_string(), "headers": r.headers,
           "body": r.body, "credential": native_credential(&r.credential)})
}

pub(crate) fn wasm_request(r: &wit::HttpRequest) -> Value {
    json!({"method": r.method, "url": r.url, "query": r.query, "headers": r.headers,
           "body": r.body, "credential": wasm_credential(&r.credential)})
}

/// A native batch with every string resolved (`""` reads as absent, as it
/// does across the interface).
pub(crate) fn native_view(b: &sdk::RowBatch) -> Value {
    let s = |i: Option<u32>| i.map(|i| b.str(i)).filter(|s| !s.is_empty());
    let rows: Vec<Value> = b
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut extras: Vec<(String, i64)> = b.extras_of(i as u32).map(|(n, v)| (n.to_owned(), v)).collect();
            extras.sort();
            json!({
                "kind": format!("{:?}", r.kind), "account": s(r.account_id), "campaign": s(r.campaign_id),
                "campaign_name": s(r.campaign_name), "ad_group": s(r.ad_group_id), "ad_group_name": s(r.ad_group_name),
                "ad": s(r.ad_id), "ad_name": s(r.ad_name), "breakdown": s(r.breakdown), "date": r.date.to_string(),
                "hour": r.hour, "currency": s(r.currency), "impressions": r.impressions, "clicks": r.clicks,
                "spend": r.spend_micros, "conversions": r.conversions_micros, "value": r.conversion_value_micros,
                "observed_at": r.observed_at_ms, "dedup": s(r.dedup_key), "extras": extras,
            })
        })
        .collect();
    json!({"rows": rows, "notices": b.notices, "next_page": b.next_page.as_ref().map(native_request)})
}

/// The sandbox's columnar batch, resolved like [`native_view`].
pub(crate) fn wasm_view(b: &wit::RowBatch) -> Value {
    let c = &b.rows;
    let s = |i: u32| {
        (i != 0)
            .then(|| b.strings[i as usize].as_str())
            .filter(|s| !s.is_empty())
    };
    let rows: Vec<Value> = (0..c.kind.len())
        .map(|i| {
            let date = sdk::Date::from_days_since_epoch(i64::from(c.day[i])).expect("a calendar day");
            let hour = match c.bucket[i] {
                wit::BucketKind::Hourly => Some(c.hour[i]),
                _ => None,
            };
            let mut extras: Vec<(String, i64)> = (0..b.extras.row.len())
                .filter(|&j| b.extras.row[j] as usize == i)
                .map(|j| (b.strings[b.extras.name[j] as usize].clone(), b.extras.value_micros[j]))
                .collect();
            extras.sort();
            json!({
                "kind": match c.kind[i] { wit::RowKind::Snapshot => "Snapshot", wit::RowKind::Delta => "Delta" },
                "account": s(c.account_id[i]), "campaign": s(c.campaign_id[i]),
                "campaign_name": s(c.campaign_name[i]), "ad_group": s(c.ad_group_id[i]), "ad_group_name": s(c.ad_group_name[i]),
                "ad": s(c.ad_id[i]), "ad_name": s(c.ad_name[i]), "breakdown": s(c.breakdown[i]), "date": date.to_string(),
                "hour": hour, "currency": s(c.currency[i]), "impressions": c.impressions[i], "clicks": c.clicks[i],
                "spend": c.spend_micros[i], "conversions": c.conversions_micros[i], "value": c.conversion_value_micros[i],
                "observed_at": (c.observed_at_ms[i] != 0).then_some(c.observed_at_ms[i]), "dedup": s(c.dedup_key[i]),
                "extras": extras,
            })
        })
        .collect();
    json!({"rows": rows, "notices": b.notices, "next_page": b.next_page.as_ref().map(wasm_request)})
}

/// The URL of a pulled page as the host hands it to the plugin: the
/// planned URL with its query before any fragment (which the host keeps).
pub(crate) fn fetched_url(r: &sdk::HttpRequest) -> String {
    let query = r.query_string();
    match (query.is_empty(), r.url.split_once('#')) {
        (true, _) => r.url.clone(),
        (false, Some((base, fragment))) => format!("{base}?{query}#{fragment}"),
        (false, None) => format!("{}?{query}", r.url),
    }
}

pub(crate) fn wasm_date(d: sdk::Date) -> wit::Date {
    wit::Date {
        year: d.year,
        month: d.month,
        day: d.day,
    }
}
