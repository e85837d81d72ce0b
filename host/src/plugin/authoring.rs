//! The plugin authors' kit behind `adpipe plugin new` and `adpipe plugin test`:
//! scaffold a working adapter crate from `templates/adapter` (with a copy of
//! the SDK this binary carries, so the crate builds anywhere), and run a built
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

/// The adapter SDK as this binary carries it (`plugins/sdk/adapter`, its
/// `wit/` link resolved): (path in the SDK crate, contents). `plugin new`
/// writes it into the new crate, so the crate needs nothing but crates.io.
pub const SDK: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../../plugins/sdk/adapter/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../../plugins/sdk/adapter/src/lib.rs"),
    ),
    (
        "src/component.rs",
        include_str!("../../../plugins/sdk/adapter/src/component.rs"),
    ),
    (
        "src/json.rs",
        include_str!("../../../plugins/sdk/adapter/src/json.rs"),
    ),
    (
        "src/memcmp.rs",
        include_str!("../../../plugins/sdk/adapter/src/memcmp.rs"),
    ),
    (
        "src/money.rs",
        include_str!("../../../plugins/sdk/adapter/src/money.rs"),
    ),
    (
        "src/num.rs",
        include_str!("../../../plugins/sdk/adapter/src/num.rs"),
    ),
    (
        "src/testing.rs",
        include_str!("../../../plugins/sdk/adapter/src/testing.rs"),
    ),
    (
        "wit/adapter.wit",
        include_str!("../../../plugins/sdk/adapter/wit/adapter.wit"),
    ),
];

/// The folder of the SDK copy inside a scaffolded crate.
pub const VENDORED_SDK_DIR: &str = "adpipe-plugin-sdk";

/// Where a new crate takes the SDK from.
#[derive(Clone, Debug)]
pub enum SdkSource {
    /// Write this binary's copy into `<crate>/adpipe-plugin-sdk/` (the default).
    Vendored,
    /// Depend on an SDK checkout by path (written relative to the crate when
    /// both sit under one directory).
    Path(PathBuf),
}

/// Authoring failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthoringError {
    #[error(
        "`{0}` is not a plugin name (lowercase letters, digits and '-', starting with a letter)"
    )]
    BadName(String),
    #[error("{0} already exists; choose another --dir")]
    Exists(String),
    #[error("no plugin SDK at {0} (a folder with the adpipe-plugin-sdk Cargo.toml); leave out --sdk to use the copy this adpipe carries")]
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
    #[error("plan_pull: {0}")]
    Plan(CallError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuthoringError + '_ {
    move |source| AuthoringError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Scaffold the adapter crate `name` in `dir`, with the SDK from `sdk`.
pub fn scaffold(name: &str, dir: &Path, sdk: &SdkSource) -> Result<Vec<PathBuf>, AuthoringError> {
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
    let sdk_path = match sdk {
        SdkSource::Vendored => VENDORED_SDK_DIR.to_owned(),
        SdkSource::Path(sdk) => {
            let found = std::fs::canonicalize(sdk)
                .ok()
                .filter(|p| p.join("Cargo.toml").exists())
                .ok_or_else(|| AuthoringError::NoSdk(sdk.display().to_string()))?;
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            let home = std::fs::canonicalize(dir).map_err(io(dir))?;
            relative(&home, &found).display().to_string()
        }
    };
    let mut written = Vec::new();
    let mut write = |target: PathBuf, text: &str| -> Result<(), AuthoringError> {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&target, text).map_err(io(&target))?;
        written.push(target);
        Ok(())
    };
    for (path, contents) in TEMPLATE {
        let text = contents
            .replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{sdk_path}}", &sdk_path.replace('\\', "/"));
        write(dir.join(path), &text)?;
    }
    if matches!(sdk, SdkSource::Vendored) {
        for (path, contents) in SDK {
            write(dir.join(VENDORED_SDK_DIR).join(path), contents)?;
        }
    }
    Ok(written)
}

/// `to` as seen from `from` (both absolute): `../sdk` rather than `/home/…/sdk`,
/// so a checkout holding both can move. Absolute when they share no prefix.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let (from, to): (Vec<_>, Vec<_>) = (from.components().collect(), to.components().collect());
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    if common <= 1 {
        return to.iter().collect();
    }
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    path.extend(&to[common..]);
    path
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
    let resolved =
        super::options::resolve(adapter.info(), &run.options).map_err(AuthoringError::Options)?;
    for issue in &resolved.unknown {
        eprintln!("warning: {issue} (ignored, as `adpipe serve` does; `adpipe check` refuses it)");
    }
    let options = resolved.options;
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
            Err(e) => error_json(&e),
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

/// What `adpipe plugin test --pull` plans and feeds.
#[derive(Clone, Debug)]
pub struct PullTest {
    pub account_id: String,
    pub since: crate::plugin::Date,
    pub until: crate::plugin::Date,
    /// The pipeline's `pull.base_url` (for a platform's sandbox or a fake).
    pub base_url: Option<String>,
    /// Recorded responses, fed in file-name order to the planned requests
    /// (and to the next pages the plugin asks for); `None`: plan only.
    pub responses: Option<PathBuf>,
    pub currency: Option<String>,
    pub options: Vec<(String, String)>,
}

/// One request of a pull: what the plugin asked for and what its response
/// parsed into.
#[derive(Debug)]
pub struct PullStep {
    /// Method, URL with its query, headers, where the credential goes, body.
    pub request: Value,
    /// The recorded response fed to it, if one was left.
    pub response: Option<PathBuf>,
    /// Rows, next page or error, as `plugin test` shows fixtures.
    pub output: Option<Value>,
}

/// The most requests one `--pull` run follows (a plugin that keeps asking
/// for next pages is shown, not followed forever).
const MAX_PULL_STEPS: usize = 100;

/// Plan a pull as a scheduled pull would, then feed the recorded responses
/// in order, following next pages as the host does (queued after the plan).
pub fn test_pull(wasm: &Path, run: &PullTest) -> Result<Vec<PullStep>, AuthoringError> {
    let limits = Limits {
        time_limit: Duration::from_secs(10),
        memory_bytes: 512 << 20,
        fuel: None,
    };
    let adapter = Runtime::new()?.load_adapter("plugin", wasm, limits)?;
    let resolved =
        super::options::resolve(adapter.info(), &run.options).map_err(AuthoringError::Options)?;
    for issue in &resolved.unknown {
        eprintln!("warning: {issue} (ignored, as `adpipe serve` does; `adpipe check` refuses it)");
    }
    let request = crate::plugin::PullRequest {
        account_id: run.account_id.clone(),
        since: run.since,
        until: run.until,
        base_url: run.base_url.clone(),
        options: resolved.options.clone(),
    };
    let planned = adapter.plan_pull(&request).map_err(AuthoringError::Plan)?;
    let mut responses: std::collections::VecDeque<PathBuf> = match &run.responses {
        None => Default::default(),
        Some(dir) => {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(io(dir))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && !p.to_string_lossy().ends_with(".expected.json"))
                .collect();
            files.sort();
            files.into()
        }
    };
    let mut queue: std::collections::VecDeque<crate::plugin::HttpRequest> = planned.into();
    let mut steps = Vec::new();
    while let Some(next) = queue.pop_front() {
        if steps.len() == MAX_PULL_STEPS {
            break;
        }
        // As the host sends it: the query before any fragment (which a
        // plugin may use to carry its own state from page to page).
        let url = match (next.query.is_empty(), next.url.split_once('#')) {
            (true, _) => next.url.clone(),
            (false, Some((base, fragment))) => format!("{base}?{}#{fragment}", next.query),
            (false, None) => format!("{}?{}", next.url, next.query),
        };
        let shown = json!({
            "method": next.method, "url": url, "headers": next.headers,
            "credential": match &next.credential {
                crate::plugin::CredentialSlot::None => "none".to_owned(),
                crate::plugin::CredentialSlot::Bearer => "Authorization: Bearer".to_owned(),
                crate::plugin::CredentialSlot::Header(name) => format!("header {name}"),
                crate::plugin::CredentialSlot::Query(name) => format!("query parameter {name}"),
            },
            "body": next.body.as_deref().map(String::from_utf8_lossy),
        });
        let Some(file) = responses.pop_front() else {
            steps.push(PullStep {
                request: shown,
                response: None,
                output: None,
            });
            continue;
        };
        let body = std::fs::read(&file).map_err(io(&file))?;
        let mut options = resolved.options.clone();
        options.push(("request.url".into(), url));
        let context = ParseContext {
            options,
            account_id: Some(run.account_id.clone()),
            currency: run.currency.clone(),
            received_at_ms: 0,
        };
        let (output, follow) = match adapter.parse_report(&body, &context) {
            Ok(batch) => (rows_json(&batch), batch.next_page),
            Err(e) => (error_json(&e), None),
        };
        steps.push(PullStep {
            request: shown,
            response: Some(file),
            output: Some(output),
        });
        queue.extend(follow);
    }
    Ok(steps)
}

/// A refused or failed call as `plugin test` shows it: the API's error codes
/// (`invalid_value`, `plugin_failed`), never Rust names.
fn error_json(error: &CallError) -> Value {
    match error {
        CallError::Rejected(e) => json!({"error": {
            "code": super::rejection_code(e.kind), "path": e.path, "message": e.message
        }}),
        other => json!({"error": {"code": other.code(), "message": other.to_string()}}),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_carried_sdk_is_every_file_of_the_sdk_crate() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk/adapter");
        let mut on_disk: Vec<String> = std::fs::read_dir(root.join("src"))
            .expect("sdk src")
            .filter_map(Result::ok)
            .map(|e| format!("src/{}", e.file_name().to_string_lossy()))
            .chain(["Cargo.toml".to_owned(), "wit/adapter.wit".to_owned()])
            .collect();
        on_disk.sort();
        let mut carried: Vec<String> = SDK.iter().map(|(p, _)| (*p).to_owned()).collect();
        carried.sort();
        assert_eq!(
            carried, on_disk,
            "a file of the SDK is missing from authoring::SDK"
        );
        let wit =
            std::fs::read_to_string(root.join("../../../wit/0.2.0/adapter.wit")).expect("wit");
        assert!(SDK
            .iter()
            .any(|(p, text)| *p == "wit/adapter.wit" && *text == wit));
    }

    #[test]
    fn a_path_sdk_is_written_relative_to_the_crate() {
        assert_eq!(
            relative(
                Path::new("/w/repo/plugins/acme"),
                Path::new("/w/repo/plugins/sdk/adapter")
            ),
            PathBuf::from("../sdk/adapter")
        );
        assert_eq!(
            relative(Path::new("/tmp/acme"), Path::new("/w/sdk")),
            PathBuf::from("/w/sdk")
        );
    }

    #[test]
    fn the_default_scaffold_carries_the_sdk_and_points_at_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let krate = dir.path().join("acme");
        let written = scaffold("acme", &krate, &SdkSource::Vendored).expect("scaffold");
        assert!(written.contains(&krate.join("adpipe-plugin-sdk/wit/adapter.wit")));
        let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).expect("manifest");
        assert!(
            manifest.contains(r#"adpipe-plugin-sdk = { path = "adpipe-plugin-sdk" }"#),
            "{manifest}"
        );
        let sdk = std::fs::read_to_string(krate.join("adpipe-plugin-sdk/Cargo.toml")).expect("sdk");
        assert!(
            !sdk.contains("workspace = true"),
            "the SDK must not inherit a workspace"
        );
    }
}
