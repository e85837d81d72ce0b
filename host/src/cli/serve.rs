//! `adpipe serve`: run the server on a configuration until SIGINT or
//! SIGTERM (plain HTTP or TLS, per `server.tls`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use adpipe::config::Config;
use adpipe::telemetry::trace::Tracing;

use super::{load_config, Overrides};

#[derive(clap::Args)]
pub struct ServeArgs {
    #[arg(long, default_value = "pipelines.toml")]
    config: PathBuf,
    /// Listen address (overrides server.listen).
    #[arg(long)]
    listen: Option<String>,
    /// Data directory (overrides server.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long, env = "ADPIPE_LOG_JSON")]
    log_json: bool,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        listen: args.listen,
        data_dir: args.data_dir,
    };
    let config = load_config(&args.config, overrides)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Logs to stderr (`ADPIPE_LOG`), and spans to an OTLP receiver when one is configured.
    let tracing =
        Tracing::init(&config.telemetry, args.log_json, runtime.handle()).context("telemetry")?;
    let served = runtime.block_on(serve(config));
    runtime.block_on(tracing.shutdown());
    served?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.server.listen;
    tracing::info!(auth = %config.auth.describe(), data_dir = %config.server.data_dir.display(), "starting adpipe");
    // Before anything writes into it: payloads, secrets and databases are the owner's only.
    adpipe::auth::create_private_dir(&config.server.data_dir)
        .with_context(|| format!("creating {}", config.server.data_dir.display()))?;
    let app = adpipe::app::App::start(config.clone())
        .await
        .context("starting adpipe")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let local = listener.local_addr()?;
    let acceptor = match &config.server.tls {
        Some(tls) => Some(adpipe::tls::acceptor(tls).context("server.tls")?),
        None => None,
    };
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    println!("adpipe listening on {scheme}://{local}");
    println!(
        "  pipelines: {}",
        config
            .pipelines
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  mint a token: adpipe token --tenant {} --role admin",
        config
            .pipelines
            .first()
            .map(|p| p.tenant.as_str())
            .unwrap_or("demo")
    );
    let router = adpipe::api::router(app);
    adpipe::tls::serve(
        listener,
        acceptor,
        router,
        adpipe::tls::Settings::from(&config.server),
        shutdown_signal(),
    )
    .await;
    tracing::info!("adpipe stopped");
    Ok(())
}

/// Resolves on Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
