//! `adpipe replay`: ask a running server to re-derive a pipeline's rows from
//! the payloads it received between two days. The server reads the kept
//! payloads a page at a time (never the whole range in memory) and refuses a
//! range longer than its `api.max_range_days` (exit code 1, with the reason).

use std::process::ExitCode;

use super::remote::{self, ServerArgs};

#[derive(clap::Args)]
pub struct ReplayArgs {
    #[arg(long)]
    pipeline: String,
    /// First day (UTC) payloads were received, YYYY-MM-DD.
    #[arg(long)]
    from: String,
    /// Last day (UTC), YYYY-MM-DD.
    #[arg(long)]
    to: String,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let body = serde_json::json!({"pipeline": args.pipeline, "from": args.from, "to": args.to});
    remote::call(
        &args.server,
        "admin",
        "POST",
        "/v1/replay",
        Some(remote::Body::Json(body)),
    )
}
