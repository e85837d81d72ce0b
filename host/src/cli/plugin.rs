//! `adpipe plugin …` (alias `plugins`): reload or list the plugins of a
//! running server, and the authors' kit — scaffold an adapter crate, build
//! and install its component, run a component over fixtures or a recorded pull.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::NaiveDate;
use clap::Subcommand;

use adpipe::config::PluginKind;
use adpipe::plugin::authoring::{
    scaffold, test_fixtures, test_pull, FixtureRun, PullTest, SdkSource,
};
use adpipe::plugin::{build, registry, Limits, Runtime};

use super::remote::{self, ServerArgs};

#[derive(clap::Args)]
pub struct PluginArgs {
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Ask a running server to reload a plugin from its file now.
    Reload {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List a running server's plugins (version, hash, state, calls, rejections,
    /// failures; the registry's desired version and what each live host serves).
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Deploy a component to every host through the plugin registry (or, with
    /// --pipeline, to that pipeline only: a canary). Checked as a reload
    /// checks it; sends `FILE.sig` as its signature when that file exists.
    Deploy {
        name: String,
        file: PathBuf,
        /// Pin the version to this pipeline only.
        #[arg(long)]
        pipeline: Option<String>,
        /// The signature file (default: FILE.sig, if present).
        #[arg(long)]
        signature: Option<PathBuf>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Make the canary (or --content-hash) the version of every host.
    Promote {
        name: String,
        #[arg(long)]
        content_hash: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Return every host to the version that served before the current one.
    Rollback {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Make an Ed25519 signing key: writes the private key to --out (mode
    /// 0600) and prints the public key for `[plugin_registry] trusted_keys`.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a component with a key from `plugin keygen`: writes FILE.sig.
    Sign {
        file: PathBuf,
        /// The private key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Scaffold a working adapter crate (WIT bindings through the SDK, fixtures,
    /// tests) that builds anywhere: it carries a copy of the SDK.
    New {
        name: String,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Depend on this SDK checkout by path instead of carrying a copy
        /// (e.g. the repository's plugins/sdk/adapter).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build a plugin crate for wasm32-wasip2 in release, check the component
    /// (and the samples beside its destination), and copy it atomically to
    /// where the configuration's `[[plugins]]` entry of that name points.
    Build {
        /// The plugin crate's folder or Cargo.toml.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Install here instead of the configured path.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The configuration naming the plugin's path (skipped when absent).
        #[arg(long, default_value = "pipelines.toml")]
        config: PathBuf,
        /// A cargo profile instead of `release` (in this repository: `plugin`,
        /// which strips debug info as the scaffold's release profile does).
        #[arg(long)]
        profile: Option<String>,
    },
    /// Run a built component over fixture payloads (print rows or errors and
    /// compare with `<fixture>.expected.json` where present), or plan a pull
    /// with `--pull ACCOUNT` and feed it recorded responses.
    Test {
        /// The component (`.wasm`).
        path: PathBuf,
        #[arg(long, required_unless_present = "pull")]
        fixtures: Option<PathBuf>,
        /// Write the expected-output files from this run.
        #[arg(long, conflicts_with = "pull")]
        bless: bool,
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        currency: Option<String>,
        /// A pipeline option, `NAME=VALUE` (repeatable), checked against the
        /// options the plugin declares, as `serve` does.
        #[arg(long = "option", value_name = "NAME=VALUE", value_parser = option_pair)]
        options: Vec<(String, String)>,
        /// Plan a pull of this account as a scheduled pull does and show the
        /// requests (credentials are the host's: only their place is shown).
        #[arg(long, value_name = "ACCOUNT", conflicts_with = "fixtures")]
        pull: Option<String>,
        /// First day of the pull (default: the 7 days ending --until).
        #[arg(long, requires = "pull")]
        since: Option<NaiveDate>,
        /// Last day of the pull (default: today, UTC).
        #[arg(long, requires = "pull")]
        until: Option<NaiveDate>,
        /// The pipeline's `pull.base_url`.
        #[arg(long, requires = "pull")]
        base_url: Option<String>,
        /// Recorded responses, fed in file-name order to the planned requests
        /// and the next pages the plugin asks for; rows shown for each.
        #[arg(long, requires = "pull")]
        responses: Option<PathBuf>,
    },
}

/// `NAME=VALUE` of `--option`.
fn option_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("`{text}`: expected NAME=VALUE")),
    }
}

pub fn run(args: PluginArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        PluginCommand::Reload { name, server } => remote::call(
            &server,
            "operator",
            "POST",
            &format!("/v1/plugins/{name}/reload"),
            None,
        ),
        PluginCommand::List { server } => {
            remote::call(&server, "operator", "GET", "/v1/plugins", None)
        }
        PluginCommand::Deploy {
            name,
            file,
            pipeline,
            signature,
            server,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let signature_file = signature.unwrap_or_else(|| sig_path(&file));
            let signature = match std::fs::read_to_string(&signature_file) {
                Ok(text) => Some(text.trim().to_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => anyhow::bail!("reading {}: {e}", signature_file.display()),
            };
            let query = pipeline.map_or(String::new(), |p| format!("?pipeline={p}"));
            remote::call(
                &server,
                "operator",
                "POST",
                &format!("/v1/plugins/{name}/versions{query}"),
                Some(remote::Body::Component { bytes, signature }),
            )
        }
        PluginCommand::Promote {
            name,
            content_hash,
            server,
        } => {
            let query = content_hash.map_or(String::new(), |h| format!("?content_hash={h}"));
            remote::call(
                &server,
                "operator",
                "POST",
                &format!("/v1/plugins/{name}/promote{query}"),
                None,
            )
        }
        PluginCommand::Rollback { name, server } => remote::call(
            &server,
            "operator",
            "POST",
            &format!("/v1/plugins/{name}/rollback"),
            None,
        ),
        PluginCommand::Keygen { out } => keygen(&out),
        PluginCommand::Sign { file, key } => sign(&file, &key),
        PluginCommand::New { name, dir, sdk } => new(&name, dir, sdk),
        PluginCommand::Build {
            path,
            out,
            config,
            profile,
        } => build_and_install(&path, out, &config, profile.as_deref()),
        PluginCommand::Test {
            path,
            fixtures,
            bless,
            account_id,
            currency,
            options,
            pull,
            since,
            until,
            base_url,
            responses,
        } => match (pull, fixtures) {
            (Some(account_id), _) => {
                let today = chrono::Utc::now().date_naive();
                let until = until.unwrap_or(today);
                let run = PullTest {
                    account_id,
                    since: wit_date(since.unwrap_or(until - chrono::Days::new(6))),
                    until: wit_date(until),
                    base_url,
                    responses,
                    currency,
                    options,
                };
                pull_test(&path, &run)
            }
            (None, Some(fixtures)) => {
                let run = FixtureRun {
                    account_id,
                    currency,
                    bless,
                    options,
                };
                test(&path, &fixtures, &run)
            }
            (None, None) => anyhow::bail!("pass --fixtures DIR, or --pull ACCOUNT"),
        },
    }
}

/// `FILE.sig`, where `plugin sign` writes the signature of FILE.
fn sig_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

fn keygen(out: &Path) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !out.exists(),
        "{} exists; choose another --out",
        out.display()
    );
    let (private, public) = adpipe::plugin::signing::generate()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(out)
        .with_context(|| format!("creating {}", out.display()))?;
    std::io::Write::write_all(&mut file, format!("{private}\n").as_bytes())?;
    println!("private key written to {} (keep it secret)", out.display());
    println!("public key, for [plugin_registry] trusted_keys: {public}");
    Ok(ExitCode::SUCCESS)
}

fn sign(file: &Path, key: &Path) -> anyhow::Result<ExitCode> {
    let private =
        std::fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?;
    let component = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let (signature, public) = adpipe::plugin::signing::sign(&private, &component)?;
    let out = sig_path(file);
    std::fs::write(&out, format!("{signature}\n"))
        .with_context(|| format!("writing {}", out.display()))?;
    println!("signed {} with {public}: {}", file.display(), out.display());
    Ok(ExitCode::SUCCESS)
}

fn wit_date(day: NaiveDate) -> adpipe::plugin::Date {
    use chrono::Datelike;
    adpipe::plugin::Date {
        year: u16::try_from(day.year()).unwrap_or_default(),
        month: day.month() as u8,
        day: day.day() as u8,
    }
}

/// Scaffold the adapter crate and say how to build and test it.
fn new(name: &str, dir: Option<PathBuf>, sdk: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    let sdk = sdk.map_or(SdkSource::Vendored, SdkSource::Path);
    for file in scaffold(name, &dir, &sdk)? {
        println!("created {}", file.display());
    }
    println!(
        "next: cd {0} && cargo test\n      \
         adpipe plugin build {0} --out dist/plugins/{1}.wasm\n      \
         adpipe plugin test dist/plugins/{1}.wasm --fixtures {0}/tests/fixtures",
        dir.display(),
        name
    );
    Ok(ExitCode::SUCCESS)
}

/// Build the crate, load the component (valid, a supported world, describes
/// itself), check the samples beside the destination, install it.
fn build_and_install(
    path: &Path,
    out: Option<PathBuf>,
    config_path: &Path,
    profile: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let manifest = build::manifest(path)?;
    let component = build::build(&manifest, profile)?;
    let adapter = Runtime::new()?
        .load_adapter(
            "plugin",
            &component,
            Limits {
                time_limit: std::time::Duration::from_secs(10),
                memory_bytes: 512 << 20,
                fuel: None,
            },
        )
        .with_context(|| format!("{} is not a plugin adpipe can load", component.display()))?;
    let info = adapter.info();
    let destination = match out {
        Some(out) => Some(out),
        None if config_path.exists() => {
            let config = super::load_config(config_path, super::Overrides::default())?;
            let entry = config
                .plugins
                .iter()
                .find(|p| p.name == info.name && p.kind == PluginKind::Adapter);
            if entry.is_none() {
                eprintln!(
                    "note: {} has no [[plugins]] entry named `{}`; pass --out to install it",
                    config_path.display(),
                    info.name
                );
            }
            entry.map(|p| p.path.clone())
        }
        None => None,
    };
    let size = std::fs::metadata(&component)?.len();
    let Some(destination) = destination else {
        println!(
            "built {} {} (platform {}): {} ({})",
            info.name,
            info.version,
            info.platform,
            component.display(),
            kilobytes(size)
        );
        return Ok(ExitCode::SUCCESS);
    };
    // The samples the server will check at reload, checked before the copy:
    // a build that fails them never reaches the watched path.
    registry::check_samples(&adapter, &destination)?;
    let size = build::install(&component, &destination)?;
    println!(
        "built {} {} (platform {}): {} ({}); a running server reloads it on its own, \
         or `adpipe plugin reload {}`",
        info.name,
        info.version,
        info.platform,
        destination.display(),
        kilobytes(size),
        info.name
    );
    Ok(ExitCode::SUCCESS)
}

fn kilobytes(bytes: u64) -> String {
    format!("{} KB", bytes.div_ceil(1000))
}

/// Plan the pull, feed the recorded responses, print each step.
fn pull_test(path: &Path, run: &PullTest) -> anyhow::Result<ExitCode> {
    let steps = test_pull(path, run)?;
    let mut refused = 0;
    for (i, step) in steps.iter().enumerate() {
        println!("== request {}", i + 1);
        println!("{}", serde_json::to_string_pretty(&step.request)?);
        match (&step.response, &step.output) {
            (Some(file), Some(output)) => {
                refused += usize::from(output.get("error").is_some());
                println!("<- {}", file.display());
                println!("{}", serde_json::to_string_pretty(output)?);
            }
            _ => println!("(no recorded response left)"),
        }
    }
    let fed = steps.iter().filter(|s| s.response.is_some()).count();
    println!(
        "{} request(s), {fed} fed a recorded response, {refused} refused",
        steps.len()
    );
    Ok(if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Run the component over the fixtures, print each output and verdict;
/// exit code 1 on any mismatch.
fn test(
    path: &std::path::Path,
    fixtures: &std::path::Path,
    run: &FixtureRun,
) -> anyhow::Result<ExitCode> {
    let results = test_fixtures(path, fixtures, run)?;
    let mut failed = 0;
    for r in &results {
        let verdict = match r.matches {
            None => "(no expected file)",
            Some(true) => "ok",
            Some(false) => {
                failed += 1;
                "MISMATCH"
            }
        };
        println!("== {} {verdict}", r.fixture.display());
        println!("{}", serde_json::to_string_pretty(&r.output)?);
    }
    println!("{} fixture(s), {failed} mismatch(es)", results.len());
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
