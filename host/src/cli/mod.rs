//! The commands of the `adpipe` binary: the clap types, the dispatch, the one
//! way every command loads its configuration, and the failure a command hands
//! back to `main` to report. Each command group lives in its own file.

mod check;
mod keys;
mod plugin;
mod remote;
mod replay;
mod serve;
mod token;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use figment::Figment;

use adpipe::auth::Role;
use adpipe::config::{Config, ConfigErrors, ConfigIssue};

#[derive(Parser)]
#[command(
    name = "adpipe",
    version,
    about = "Ad-performance ingestion through sandboxed WASM adapters, exact aggregation, insights API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server on a configuration.
    Serve(serve::ServeArgs),
    /// Mint a development token (prints only the token).
    Token(token::TokenArgs),
    /// Manage API keys for machine clients (hashed at rest, scoped to a
    /// tenant and roles, revocable).
    Keys(keys::KeysArgs),
    /// Ask a running server to re-derive a pipeline's rows from the payloads
    /// it received between two days, through the adapter serving now.
    Replay(replay::ReplayArgs),
    /// Validate a configuration and explain every mistake.
    Check(check::CheckArgs),
    /// Work with plugins: reload or list them on a running server, scaffold
    /// a new adapter, run a built component over fixtures.
    #[command(visible_alias = "plugins")]
    Plugin(plugin::PluginArgs),
}

/// Exit code of a command that failed while working (the server).
const FAILED: u8 = 1;
/// Exit code of an invalid configuration, like clap's usage errors; the
/// one-shot commands (`token`, `keys`, `replay`, `plugin`) have always
/// exited with it on any failure.
const REFUSED: u8 = 2;

/// Run `command`; its exit code, or the failure for `main` to report.
pub fn run(command: Command) -> Result<ExitCode, Failure> {
    match command {
        Command::Serve(args) => serve::run(args).map_err(failed("adpipe", FAILED)),
        Command::Token(args) => token::run(args).map_err(failed("adpipe token", REFUSED)),
        Command::Keys(args) => keys::run(args).map_err(failed("adpipe keys", REFUSED)),
        Command::Replay(args) => replay::run(args).map_err(failed("adpipe replay", REFUSED)),
        Command::Check(args) => check::run(args).map_err(failed("adpipe check", REFUSED)),
        Command::Plugin(args) => plugin::run(args).map_err(failed("adpipe plugin", REFUSED)),
    }
}

/// A command that failed: who reports it, what went wrong, the exit code.
pub struct Failure {
    /// `adpipe` or `adpipe COMMAND`, the start of the report.
    pub scope: &'static str,
    pub error: anyhow::Error,
    pub code: u8,
}

/// Wrap a command's error; an invalid configuration is reported alike by
/// every command (`adpipe: FILE has N problem(s):`, exit 2).
fn failed(scope: &'static str, code: u8) -> impl FnOnce(anyhow::Error) -> Failure {
    move |error| {
        if error.is::<InvalidConfig>() {
            Failure {
                scope: "adpipe",
                error,
                code: REFUSED,
            }
        } else {
            Failure { scope, error, code }
        }
    }
}

/// Command-line values merged over the configuration file and the
/// environment.
#[derive(Default)]
pub struct Overrides {
    /// `--listen`: `server.listen`.
    pub listen: Option<String>,
    /// `--data-dir`: `server.data_dir`.
    pub data_dir: Option<PathBuf>,
}

/// Load and validate the configuration at `path` under `overrides`: the one
/// way every command reads its configuration.
pub fn load_config(path: &Path, overrides: Overrides) -> Result<Config, InvalidConfig> {
    let mut figment = Figment::new();
    if let Some(listen) = overrides.listen {
        figment = figment.merge(("server.listen", listen));
    }
    if let Some(dir) = overrides.data_dir {
        figment = figment.merge(("server.data_dir", dir));
    }
    Config::load_with(path, figment).map_err(|ConfigErrors(issues)| InvalidConfig {
        path: path.to_owned(),
        issues,
    })
}

/// The configuration did not load: every mistake, each with its place.
#[derive(Debug)]
pub struct InvalidConfig {
    path: PathBuf,
    issues: Vec<ConfigIssue>,
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} has {} problem(s):",
            self.path.display(),
            self.issues.len()
        )?;
        for issue in &self.issues {
            write!(f, "\n  - {issue}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidConfig {}

/// `--role` values, each checked.
fn parse_roles(roles: &[String]) -> anyhow::Result<Vec<Role>> {
    roles
        .iter()
        .map(|r| {
            Role::parse(r).ok_or_else(|| {
                anyhow::anyhow!("`{r}` is not a role (viewer, analyst, ingest, admin, operator)")
            })
        })
        .collect()
}

/// A `--tenant` value, checked.
fn check_tenant(tenant: &str) -> anyhow::Result<()> {
    if !adpipe::config::is_slug(tenant) {
        anyhow::bail!("`{tenant}` is not a valid tenant id (lowercase letters, digits, '-', '_')");
    }
    Ok(())
}
