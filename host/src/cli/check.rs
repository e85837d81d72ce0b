//! `adpipe check`: validate a configuration and explain every mistake with
//! its place; then load every plugin it names (a valid component of a
//! supported interface version) with the samples shipped beside it, check
//! each pipeline's options against what its adapter declares (an undeclared
//! option is an error here, a warning at `serve`), and say which platform API versions are near or past
//! their sunset.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{load_config, Overrides};
use adpipe::config::{Config, PluginKind};
use adpipe::plugin::registry::check_samples;
use adpipe::plugin::{options, Runtime};

#[derive(clap::Args)]
pub struct CheckArgs {
    #[arg(long, default_value = "pipelines.toml")]
    config: PathBuf,
    /// Check the configuration only, without loading the plugins.
    #[arg(long)]
    no_plugins: bool,
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.config, Overrides::default())?;
    let at = args.config.display();
    if !args.no_plugins {
        let (errors, warnings) = check_plugins(&config);
        for warning in &warnings {
            eprintln!("{at}: warning: {warning}");
        }
        if !errors.is_empty() {
            for error in &errors {
                eprintln!("{at}: {error}");
            }
            eprintln!("{at}: {} problem(s)", errors.len());
            return Ok(ExitCode::from(2));
        }
    }
    println!(
        "{at}: OK ({} plugin(s), {} pipeline(s){})",
        config.plugins.len(),
        config.pipelines.len(),
        if args.no_plugins {
            ", plugins not loaded"
        } else {
            ", plugins loaded"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Load every plugin and check what the pipelines ask of their adapters.
fn check_plugins(config: &Config) -> (Vec<String>, Vec<String>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let runtime = match Runtime::with_fuel(config.sandbox.fuel) {
        Ok(runtime) => runtime,
        Err(e) => return (vec![e.to_string()], warnings),
    };
    let mut adapters = BTreeMap::new();
    for plugin in &config.plugins {
        let at = format!("plugins `{}` ({})", plugin.name, plugin.path.display());
        match plugin.kind {
            PluginKind::Adapter => {
                match runtime.load_adapter(&plugin.name, &plugin.path, plugin.limits()) {
                    Ok(adapter) => {
                        if let Err(e) = check_samples(&adapter, &plugin.path) {
                            errors.push(format!("{at}: {}", one_line(&e.to_string())));
                        }
                        adapters.insert(plugin.name.clone(), adapter);
                    }
                    Err(e) => errors.push(format!("{at}: {}", one_line(&e.to_string()))),
                }
            }
            PluginKind::Metric => {
                if let Err(e) = runtime.load_metric(&plugin.name, &plugin.path, plugin.limits()) {
                    errors.push(format!("{at}: {}", one_line(&e.to_string())));
                }
            }
        }
    }
    for (i, pipeline) in config.pipelines.iter().enumerate() {
        let Some(adapter) = adapters.get(&pipeline.adapter) else {
            continue;
        };
        let info = adapter.info();
        let given: Vec<(String, String)> = pipeline
            .options
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        let at = format!("pipelines[{i}] `{}`", pipeline.name);
        match options::resolve(info, &given) {
            Err(issues) => {
                for issue in issues {
                    errors.push(format!("{at}.options.{}: {}", issue.option, issue.message));
                }
            }
            Ok(resolved) => {
                for issue in &resolved.unknown {
                    errors.push(format!("{at}.options.{}: {}", issue.option, issue.message));
                }
                let resolved = resolved.options;
                let today = chrono::Utc::now()
                    .with_timezone(&pipeline.timezone)
                    .date_naive();
                let newest = info.api_versions.first().map_or("", |v| v.name.as_str());
                if let Some(used) = options::api_version(info, &resolved, today) {
                    if let Some(advice) = used.advice(&info.platform, newest) {
                        if used.status() == "expired" {
                            errors.push(format!("{at}.options.api_version: {advice}"));
                        } else {
                            warnings.push(format!("{at}.options.api_version: {advice}"));
                        }
                    }
                }
            }
        }
    }
    (errors, warnings)
}

/// An error's text on one line (wasmtime's can span many).
fn one_line(text: &str) -> String {
    let first = text.lines().next().unwrap_or_default();
    first.chars().take(400).collect()
}
