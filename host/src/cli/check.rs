//! `adpipe check`: validate a configuration and explain every mistake with
//! its place.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{load_config, Overrides};

#[derive(clap::Args)]
pub struct CheckArgs {
    #[arg(long, default_value = "pipelines.toml")]
    config: PathBuf,
}

pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.config, Overrides::default())?;
    println!(
        "{}: OK ({} plugin(s), {} pipeline(s))",
        args.config.display(),
        config.plugins.len(),
        config.pipelines.len()
    );
    Ok(ExitCode::SUCCESS)
}
