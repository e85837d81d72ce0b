//! Talking to a running server (`replay` as a tenant's admin, `plugin
//! reload` and `plugin list` as the operator): where it is, the token to
//! show, one call whose JSON answer is printed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use super::{load_config, token, Overrides};

/// How to reach a running server.
#[derive(clap::Args)]
pub struct ServerArgs {
    /// Base URL of the server (default: http:// + server.listen of the config).
    #[arg(long)]
    url: Option<String>,
    /// Bearer token (default: minted from the config's JWT secret with the
    /// role the command needs).
    #[arg(long, env = "ADPIPE_TOKEN")]
    token: Option<String>,
    #[arg(long, default_value = "pipelines.toml")]
    config: PathBuf,
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// What a `POST` sends.
pub enum Body {
    Json(serde_json::Value),
    /// A plugin component, with its signature (`Adpipe-Signature`) if any.
    Component {
        bytes: Vec<u8>,
        signature: Option<String>,
    },
}

/// `GET` or `POST` (with `body`) `path` on the server as `role`; print its
/// JSON answer. Exit code 1 if the server refused.
pub fn call(
    server: &ServerArgs,
    role: &str,
    method: &str,
    path: &str,
    body: Option<Body>,
) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        data_dir: server.data_dir.clone(),
        ..Overrides::default()
    };
    // With --url and --token, no configuration is needed (another machine's server).
    let config = match (&server.url, &server.token) {
        (Some(_), Some(_)) => None,
        _ => Some(load_config(&server.config, overrides)?),
    };
    let base = match (&server.url, &config) {
        (Some(url), _) => url.clone(),
        (None, Some(config)) => format!("http://{}", config.server.listen),
        (None, None) => unreachable!("the configuration is loaded without --url"),
    };
    let token = match (&server.token, &config) {
        (Some(t), _) => t.clone(),
        (None, None) => unreachable!("the configuration is loaded without --token"),
        (None, Some(config)) => {
            let tenant = config
                .pipelines
                .first()
                .map(|p| p.tenant.clone())
                .unwrap_or_else(|| "admin".into());
            token::mint(
                config,
                tenant,
                &[role.to_owned()],
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
        match body {
            Some(Body::Json(json)) => request = request.json(&json),
            Some(Body::Component { bytes, signature }) => {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/wasm")
                    .body(bytes);
                if let Some(signature) = signature {
                    request = request.header("adpipe-signature", signature);
                }
            }
            None => {}
        }
        let hint = if server.url.is_some() {
            String::new()
        } else {
            format!(
                " (the address is server.listen of {}; a server started with another \
                 --listen or config: pass --url http://HOST:PORT)",
                server.config.display()
            )
        };
        let response = request
            .bearer_auth(&token)
            .send()
            .await
            .with_context(|| format!("reaching {base}{hint}"))?;
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
