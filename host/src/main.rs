//! The `adpipe` command line: parse the arguments, run the command (see
//! [`cli`]), and report a failure the same way whichever command failed.

mod cli;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli.command) {
        Ok(code) => code,
        Err(failure) => report(&failure),
    }
}

/// The one error printer: `adpipe[ COMMAND]: what failed`, then one line per
/// cause (their `Display`, never a `Debug` dump), a cause its wrapper already
/// quotes left out; then the failure's exit code.
fn report(failure: &cli::Failure) -> ExitCode {
    let mut said = failure.error.to_string();
    eprintln!("{}: {said}", failure.scope);
    for cause in failure.error.chain().skip(1) {
        let text = cause.to_string();
        if !said.contains(&text) {
            eprintln!("  caused by: {text}");
            said = text;
        }
    }
    ExitCode::from(failure.code)
}
