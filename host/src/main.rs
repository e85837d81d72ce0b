//! The `adpipe` command line: `serve`, `token`, `check`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use figment::Figment;

use adpipe::auth::{now_unix, parse_ttl, Claims, JwtKeys, Role};
use adpipe::config::{Config, ConfigErrors};

#[derive(Parser)]
#[command(
    name = "adpipe",
    version,
    about = "Ad-performance ingestion through sandboxed WASM adapters, exact aggregation, insights API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server on a configuration.
    Serve {
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
    },
    /// Mint a development token (prints only the token).
    Token {
        #[arg(long)]
        tenant: String,
        /// viewer, analyst, ingest or admin (repeat for several).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Lifetime: 3600, 90s, 15m, 1h, 7d (at most auth.max_token_ttl, default 30d).
        #[arg(long, default_value = "1h")]
        ttl: String,
        #[arg(long, default_value = "local")]
        sub: String,
        #[arg(long, default_value = "pipelines.toml")]
        config: PathBuf,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Manage API keys for machine clients (hashed at rest, scoped to a
    /// tenant and roles, revocable).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
        #[arg(long, default_value = "pipelines.toml", global = true)]
        config: PathBuf,
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
    /// Ask a running server to re-derive a pipeline's rows from the payloads
    /// it received between two days, through the adapter serving now.
    Replay {
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
    },
    /// Validate a configuration and explain every mistake.
    Check {
        #[arg(long, default_value = "pipelines.toml")]
        config: PathBuf,
    },
    /// Work with plugins: reload or list them on a running server, scaffold
    /// a new adapter, run a built component over fixtures.
    #[command(visible_alias = "plugins")]
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Ask a running server to reload a plugin from its file now.
    Reload {
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List a running server's plugins (version, hash, state, calls, failures).
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
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a key; prints it once (only its digest is kept).
    Create {
        #[arg(long)]
        tenant: String,
        /// viewer, analyst, ingest or admin (repeat for several).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// What the key is for.
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// List a tenant's keys (ids, names, roles, revocation).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke a key at once.
    Revoke {
        #[arg(long)]
        tenant: String,
        id: String,
    },
}

/// How to reach a running server as an admin.
#[derive(clap::Args)]
struct ServerArgs {
    /// Base URL of the server (default: http:// + server.listen of the config).
    #[arg(long)]
    url: Option<String>,
    /// Admin bearer token (default: minted from the config's JWT secret).
    #[arg(long, env = "ADPIPE_TOKEN")]
    token: Option<String>,
    #[arg(long, default_value = "pipelines.toml")]
    config: PathBuf,
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn overrides(listen: Option<String>, data_dir: Option<PathBuf>) -> Figment {
    let mut figment = Figment::new();
    if let Some(listen) = listen {
        figment = figment.merge(("server.listen", listen));
    }
    if let Some(dir) = data_dir {
        figment = figment.merge(("server.data_dir", dir));
    }
    figment
}

fn load(config: &std::path::Path, overrides: Figment) -> Result<Config, ExitCode> {
    Config::load_with(config, overrides).map_err(|ConfigErrors(issues)| {
        eprintln!(
            "adpipe: {} has {} problem(s):",
            config.display(),
            issues.len()
        );
        for issue in issues {
            eprintln!("  - {issue}");
        }
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match load(&config, Figment::new()) {
            Ok(c) => {
                println!(
                    "{}: OK ({} plugin(s), {} pipeline(s))",
                    config.display(),
                    c.plugins.len(),
                    c.pipelines.len()
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Token {
            tenant,
            roles,
            ttl,
            sub,
            config,
            data_dir,
        } => {
            let config = match load(&config, overrides(None, data_dir)) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match token(&config, tenant, &roles, &ttl, sub) {
                Ok(token) => {
                    println!("{token}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("adpipe token: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Keys {
            command,
            config,
            data_dir,
        } => {
            let config = match load(&config, overrides(None, data_dir)) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match keys_command(&config, command) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("adpipe keys: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Replay {
            pipeline,
            from,
            to,
            server,
        } => {
            let body = serde_json::json!({"pipeline": pipeline, "from": from, "to": to});
            match call_server(&server, "POST", "/v1/replay", Some(body), None) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("adpipe replay: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Plugin { command } => match plugin_command(command) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("adpipe plugin: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Serve {
            config,
            listen,
            data_dir,
            log_json,
        } => {
            init_tracing(log_json);
            let config = match load(&config, overrides(listen, data_dir)) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("adpipe: starting the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("adpipe: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn parse_roles(roles: &[String]) -> anyhow::Result<Vec<Role>> {
    roles
        .iter()
        .map(|r| {
            Role::parse(r)
                .with_context(|| format!("`{r}` is not a role (viewer, analyst, ingest, admin)"))
        })
        .collect()
}

fn check_tenant(tenant: &str) -> anyhow::Result<()> {
    if !adpipe::config::is_slug(tenant) {
        anyhow::bail!("`{tenant}` is not a valid tenant id (lowercase letters, digits, '-', '_')");
    }
    Ok(())
}

fn keys_command(config: &Config, command: KeysCommand) -> anyhow::Result<()> {
    use adpipe::metadata::{AuditEntry, Metadata};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let data_dir = &config.server.data_dir;
        adpipe::auth::create_private_dir(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let url = config
            .metadata
            .url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("metadata.db").display()));
        let metadata = Metadata::open(&url).await.context("opening metadata")?;
        let audit = |tenant: &str, action: &str, target: &str| AuditEntry {
            id: uuid::Uuid::new_v4().to_string(),
            at_ms: chrono::Utc::now().timestamp_millis(),
            tenant: tenant.to_owned(),
            actor: "cli".into(),
            action: action.into(),
            target: target.into(),
            status: 0,
            request_id: None,
        };
        match command {
            KeysCommand::Create {
                tenant,
                roles,
                name,
            } => {
                check_tenant(&tenant)?;
                let roles = parse_roles(&roles)?;
                let made = adpipe::auth::apikeys::generate(&tenant, &name, &roles);
                metadata.add_api_key(&made.record).await?;
                metadata
                    .audit(&audit(&tenant, "keys create", &made.record.id))
                    .await?;
                eprintln!(
                    "created key {} for tenant {tenant} (shown once; store it now)",
                    made.record.id
                );
                println!("{}", made.key);
            }
            KeysCommand::List { tenant } => {
                for key in metadata.api_keys(&tenant).await? {
                    println!(
                        "{}\t{}\t{}\t{}",
                        key.id,
                        key.name,
                        key.roles.join(","),
                        if key.revoked_at_ms.is_some() {
                            "revoked"
                        } else {
                            "active"
                        }
                    );
                }
            }
            KeysCommand::Revoke { tenant, id } => {
                if !metadata.revoke_api_key(&tenant, &id).await? {
                    anyhow::bail!("tenant {tenant} has no live key `{id}`");
                }
                metadata.audit(&audit(&tenant, "keys revoke", &id)).await?;
                eprintln!("revoked key {id}");
            }
        }
        anyhow::Ok(())
    })
}

fn token(
    config: &Config,
    tenant: String,
    roles: &[String],
    ttl: &str,
    sub: String,
) -> anyhow::Result<String> {
    check_tenant(&tenant)?;
    let roles = parse_roles(roles)?;
    let ttl_secs = parse_ttl(ttl)
        .with_context(|| format!("`{ttl}` is not a lifetime (e.g. 3600, 15m, 1h, 7d)"))?;
    // Validated by `load`; the default if it somehow is not.
    let max = config.auth.max_token_ttl_secs().unwrap_or(30 * 86_400);
    if ttl_secs > max {
        anyhow::bail!(
            "--ttl {ttl} is longer than the longest lifetime allowed, {} (auth.max_token_ttl); \
             a leaked token stays valid until it expires: mint shorter ones, or use an API key \
             (`adpipe keys create`, revocable) for long-lived clients",
            config.auth.max_token_ttl
        );
    }
    let ttl = ttl_secs;
    let keys = JwtKeys::from_config(&config.auth, &config.server.data_dir)?;
    let now = now_unix();
    keys.mint(&Claims {
        sub,
        tenant,
        roles,
        exp: now + ttl,
        iat: Some(now),
        nbf: None,
        iss: config.auth.issuer.clone(),
        aud: config.auth.audience.clone(),
    })
    .context("tokens are minted by your identity provider when [auth] uses public keys; use an API key (`adpipe keys create`) for scripts")
}

fn plugin_command(command: PluginCommand) -> anyhow::Result<ExitCode> {
    let (server, path, method) = match &command {
        PluginCommand::Reload { name, server } => {
            (server, format!("/v1/plugins/{name}/reload"), "POST")
        }
        PluginCommand::List { server } => (server, "/v1/plugins".to_owned(), "GET"),
        PluginCommand::New { name, dir, sdk } => {
            let dir = dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("plugins/adapters").join(name));
            for file in adpipe::plugin::authoring::scaffold(name, &dir, sdk)? {
                println!("created {}", file.display());
            }
            println!(
                "next: cargo build --release --target wasm32-wasip2 --manifest-path {0}/Cargo.toml\n      \
                 adpipe plugin test {0}/target/wasm32-wasip2/release/adpipe_plugin_{1}.wasm --fixtures {0}/tests/fixtures",
                dir.display(),
                name.replace('-', "_")
            );
            return Ok(ExitCode::SUCCESS);
        }
        PluginCommand::Test {
            path,
            fixtures,
            bless,
            account_id,
            currency,
        } => {
            let run = adpipe::plugin::authoring::FixtureRun {
                account_id: account_id.clone(),
                currency: currency.clone(),
                bless: *bless,
            };
            let results = adpipe::plugin::authoring::test_fixtures(path, fixtures, &run)?;
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
            return Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
    };
    call_server(server, method, &path, None, None)
}

/// Call a running server as an admin and print its JSON answer.
fn call_server(
    server: &ServerArgs,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
    tenant: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let config = load(&server.config, overrides(None, server.data_dir.clone()))
        .map_err(|_| anyhow::anyhow!("the configuration is invalid (run `adpipe check`)"))?;
    let base = server
        .url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.server.listen));
    let token = match &server.token {
        Some(t) => t.clone(),
        None => {
            let tenant = tenant
                .map(String::from)
                .or_else(|| config.pipelines.first().map(|p| p.tenant.clone()))
                .unwrap_or_else(|| "admin".into());
            token(
                &config,
                tenant,
                &["admin".to_owned()],
                "5m",
                "adpipe-cli".into(),
            )?
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, answer) = runtime.block_on(async {
        let client = reqwest::Client::new();
        let mut request = if method == "POST" {
            client.post(format!("{base}{path}"))
        } else {
            client.get(format!("{base}{path}"))
        };
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request
            .bearer_auth(&token)
            .send()
            .await
            .with_context(|| format!("reaching {base}"))?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await.context("reading the answer")?;
        anyhow::Ok((status, answer))
    })?;
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ADPIPE_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,sqlx=warn,wasmtime=warn,cranelift=warn")
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen: SocketAddr = config.server.listen.parse().context("server.listen")?;
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
