//! `adpipe plugin …` (alias `plugins`): reload or list the plugins of a
//! running server, and the authors' kit — scaffold an adapter crate, run a
//! built component over fixtures.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use adpipe::plugin::authoring::{scaffold, test_fixtures, FixtureRun};

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
    /// List a running server's plugins (version, hash, state, calls, rejections, failures).
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Scaffold a working adapter crate (WIT bindings through the SDK, fixtures, tests).
    New {
        name: String,
        /// Where to create it (default: plugins/adapters/NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The plugin SDK crate (default: plugins/sdk/adapter).
        #[arg(long, default_value = "plugins/sdk/adapter")]
        sdk: PathBuf,
    },
    /// Run a built component over fixture payloads; print rows or errors and
    /// compare with `<fixture>.expected.json` where present.
    Test {
        /// The component (`.wasm`).
        path: PathBuf,
        #[arg(long)]
        fixtures: PathBuf,
        /// Write the expected-output files from this run.
        #[arg(long)]
        bless: bool,
        #[arg(long)]
        account_id: Option<String>,
        #[arg(long)]
        currency: Option<String>,
        /// A pipeline option, `NAME=VALUE` (repeatable), checked against the
        /// options the plugin declares, as `serve` does.
        #[arg(long = "option", value_name = "NAME=VALUE", value_parser = option_pair)]
        options: Vec<(String, String)>,
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
        PluginCommand::New { name, dir, sdk } => new(&name, dir, &sdk),
        PluginCommand::Test {
            path,
            fixtures,
            bless,
            account_id,
            currency,
            options,
        } => {
            let run = FixtureRun {
                account_id,
                currency,
                bless,
                options,
            };
            test(&path, &fixtures, &run)
        }
    }
}

/// Scaffold the adapter crate and say how to build and test it.
fn new(name: &str, dir: Option<PathBuf>, sdk: &std::path::Path) -> anyhow::Result<ExitCode> {
    let dir = dir.unwrap_or_else(|| PathBuf::from("plugins/adapters").join(name));
    for file in scaffold(name, &dir, sdk)? {
        println!("created {}", file.display());
    }
    println!(
        "next: cargo build --release --target wasm32-wasip2 --manifest-path {0}/Cargo.toml\n      \
         adpipe plugin test {0}/target/wasm32-wasip2/release/adpipe_plugin_{1}.wasm --fixtures {0}/tests/fixtures",
        dir.display(),
        name.replace('-', "_")
    );
    Ok(ExitCode::SUCCESS)
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
