//! `adpipe token`: mint a development token from the configuration's JWT
//! secret and print only the token; also mints the short-lived admin token
//! the commands that call a running server use.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use adpipe::auth::{now_unix, parse_ttl, Claims, JwtKeys};
use adpipe::config::Config;

use super::{check_tenant, load_config, parse_roles, Overrides};

#[derive(clap::Args)]
pub struct TokenArgs {
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
}

pub fn run(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        data_dir: args.data_dir,
        ..Overrides::default()
    };
    let config = load_config(&args.config, overrides)?;
    let token = mint(&config, args.tenant, &args.roles, &args.ttl, args.sub)?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

/// A token for `tenant` with `roles`, living `ttl` (capped by
/// `auth.max_token_ttl`), signed with the configuration's keys.
pub fn mint(
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
    let max = config.auth.max_token_ttl.as_secs();
    if ttl_secs > max {
        anyhow::bail!(
            "--ttl {ttl} is longer than the longest lifetime allowed, {} (auth.max_token_ttl); \
             a leaked token stays valid until it expires: mint shorter ones, or use an API key \
             (`adpipe keys create`, revocable) for long-lived clients",
            adpipe::config::span_text(config.auth.max_token_ttl)
        );
    }
    let keys = JwtKeys::from_config(&config.auth, &config.server.data_dir)?;
    let now = now_unix();
    keys.mint(&Claims {
        sub,
        tenant,
        roles,
        exp: now + ttl_secs,
        iat: Some(now),
        nbf: None,
        iss: config.auth.issuer.clone(),
        aud: config.auth.audience.clone(),
    })
    .context("tokens are minted by your identity provider when [auth] uses public keys; use an API key (`adpipe keys create`) for scripts")
}
