//! The plugin authors' kit behind `adpipe plugin new` and `adpipe plugin test`:
//! scaffold a working adapter crate from `templates/adapter`, and run a built
//! component over fixture payloads, comparing with expected-output files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::plugin::{
    BucketKind, CallError, Limits, ParseContext, RowBatch, RowKind, Runtime, WebhookRequest,
};

/// Files of the adapter template: (path in the new crate, contents).
const TEMPLATE: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../../templates/adapter/Cargo.toml.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../../../templates/adapter/src/lib.rs.tmpl"),
    ),
    (
        "tests/native.rs",
        include_str!("../../../templates/adapter/tests/native.rs.tmpl"),
    ),
    (
        "tests/fixtures/report.json",
        include_str!("../../../templates/adapter/tests/fixtures/report.json"),
    ),
];

/// Authoring failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthoringError {
    #[error(
        "`{0}` is not a plugin name (lowercase letters, digits and '-', starting with a letter)"
    )]
    BadName(String),
    #[error("{0} already exists; choose another --dir")]
    Exists(String),
    #[error("the plugin SDK was not found at {0}; pass --sdk PATH (the repository's plugins/sdk/adapter)")]
    NoSdk(String),
    #[error("{path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Load(#[from] crate::plugin::LoadError),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Options(Vec<crate::plugin::options::OptionIssue>),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuthoringError + '_ {
    move |source| AuthoringError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Scaffold the adapter crate `name` in `dir`, depending on the SDK at `sdk`.
pub fn scaffold(name: &str, dir: &Path, sdk: &Path) -> Result<Vec<PathBuf>, AuthoringError> {
    let valid = name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(AuthoringError::BadName(name.into()));
    }
    if dir.exists() {
        return Err(AuthoringError::Exists(dir.display().to_string()));
    }
    let sdk =
        std::fs::canonicalize(sdk).map_err(|_| AuthoringError::NoSdk(sdk.display().to_string()))?;
    if !sdk.join("Cargo.toml").exists() {
        return Err(AuthoringError::NoSdk(sdk.display().to_string()));
    }
    let mut written = Vec::new();
    for (path, contents) in TEMPLATE {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let text = contents
            .replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{sdk_path}}", &sdk.display().to_string());
        std::fs::write(&target, text).map_err(io(&target))?;
        written.push(target);
    }
    Ok(written)
}

/// One fixture's outcome.
#[derive(Debug)]
pub struct FixtureResult {
    pub fixture: PathBuf,
    /// Rows (or the error) as JSON.
    pub output: Value,
    /// `None`: no expected file; `Some(true)`: matches it.
    pub matches: Option<bool>,
}

/// Options of a fixture run.
#[derive(Clone, Debug, Default)]
pub struct FixtureRun {
    pub account_id: Option<String>,
    pub currency: Option<String>,
    /// Write `<fixture>.expected.json` files instead of comparing.
    pub bless: bool,
    /// A pipeline's `[pipelines.options]`, checked against what the plugin
    /// declares exactly as `serve` checks them (defaults filled in).
    pub options: Vec<(String, String)>,
}

/// Run the component at `wasm` over every `*.json` in `fixtures` (files named
/// `webhook*` as webhook bodies), comparing with `<name>.expected.json`.
pub fn test_fixtures(
    wasm: &Path,
    fixtures: &Path,
    run: &FixtureRun,
) -> Result<Vec<FixtureResult>, AuthoringError> {
    let limits = Limits {
        time_limit: Duration::from_secs(10),
        memory_bytes: 512 << 20,
        fuel: None,
    };
    let adapter = Runtime::new()?.load_adapter("plugin", wasm, limits)?;
    let options =
        super::options::resolve(adapter.info(), &run.options).map_err(AuthoringError::Options)?;
    let context = ParseContext {
        options,
        account_id: run.account_id.clone(),
        currency: run.currency.clone(),
        received_at_ms: 0,
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures)
        .map_err(io(fixtures))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.ends_with(".json") && !name.ends_with(".expected.json")
        })
        .collect();
    paths.sort();
    let mut results = Vec::new();
    for path in paths {
        let body = std::fs::read(&path).map_err(io(&path))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let outcome = parse_sample(&adapter, &name, body, &context);
        let output = match outcome {
            Ok(batch) => rows_json(&batch),
            // The API's error codes (`invalid_value`, `plugin_failed`), never Rust names.
            Err(CallError::Rejected(e)) => json!({"error": {
                "code": super::rejection_code(e.kind), "path": e.path, "message": e.message
            }}),
            Err(other) => json!({"error": {"code": other.code(), "message": other.to_string()}}),
        };
        let expected_path = path.with_extension("expected.json");
        let matches = if run.bless {
            let text = serde_json::to_string_pretty(&output).unwrap_or_default() + "\n";
            std::fs::write(&expected_path, text).map_err(io(&expected_path))?;
            Some(true)
        } else if expected_path.exists() {
            let text = std::fs::read_to_string(&expected_path).map_err(io(&expected_path))?;
            Some(serde_json::from_str::<Value>(&text).ok() == Some(output.clone()))
        } else {
            None
        };
        results.push(FixtureResult {
            fixture: path,
            output,
            matches,
        });
    }
    Ok(results)
}

/// Parse one fixture or sample file's `body`: a webhook body when its
/// `name` starts with `webhook`, a report page otherwise.
pub(crate) fn parse_sample(
    adapter: &super::Adapter,
    name: &str,
    body: Vec<u8>,
    context: &ParseContext,
) -> Result<RowBatch, CallError> {
    if name.starts_with("webhook") {
        let request = WebhookRequest {
            query: vec![],
            headers: vec![],
            body,
        };
        adapter.parse_webhook(&request, context)
    } else {
        adapter.parse_report(&body, context)
    }
}

/// A batch with its string table resolved, as readable JSON.
pub(crate) fn rows_json(batch: &RowBatch) -> Value {
    let s = |i: u32| {
        (i != 0)
            .then(|| batch.strings.get(i as usize))
            .flatten()
            .map(|v| json!(v))
            .unwrap_or(Value::Null)
    };
    let c = &batch.rows;
    let e = &batch.extras;
    let rows: Vec<Value> = (0..c.kind.len())
        .map(|i| {
            let extras: serde_json::Map<String, Value> = (0..e.row.len())
                .filter(|&j| e.row[j] as usize == i)
                .map(|j| {
                    (
                        batch.strings.get(e.name[j] as usize).cloned().unwrap_or_default(),
                        json!(e.value_micros[j]),
                    )
                })
                .collect();
            let day = adpipe_plugin_sdk::Date::from_days_since_epoch(i64::from(c.day[i]))
                .map(|d| d.to_string());
            let (date, hour, event_at_ms) = match c.bucket[i] {
                BucketKind::Daily => (json!(day), Value::Null, Value::Null),
                BucketKind::Hourly => (json!(day), json!(c.hour[i]), Value::Null),
                BucketKind::Event => (Value::Null, Value::Null, json!(c.event_at_ms[i])),
            };
            json!({
                "kind": match c.kind[i] { RowKind::Snapshot => "snapshot", RowKind::Delta => "delta" },
                "account_id": s(c.account_id[i]), "campaign_id": s(c.campaign_id[i]),
                "campaign_name": s(c.campaign_name[i]), "ad_group_id": s(c.ad_group_id[i]),
                "ad_group_name": s(c.ad_group_name[i]), "ad_id": s(c.ad_id[i]), "ad_name": s(c.ad_name[i]),
                "breakdown": s(c.breakdown[i]), "date": date, "hour": hour, "event_at_ms": event_at_ms,
                "currency": s(c.currency[i]), "impressions": c.impressions[i], "clicks": c.clicks[i],
                "spend_micros": c.spend_micros[i], "conversions_micros": c.conversions_micros[i],
                "conversion_value_micros": c.conversion_value_micros[i], "dedup_key": s(c.dedup_key[i]),
                "extras": extras,
            })
        })
        .collect();
    json!({"rows": rows, "notices": batch.notices, "next_page": batch.next_page.as_ref().map(|p| p.url.clone())})
}
