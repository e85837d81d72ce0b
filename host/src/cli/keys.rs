//! `adpipe keys create|list|revoke`: API keys for machine clients, written
//! straight into the metadata database (hashed at rest, scoped to a tenant
//! and roles, revocable), each change audited as done by `cli`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use adpipe::metadata::{AuditEntry, Metadata};

use super::{check_tenant, load_config, parse_roles, Overrides};

#[derive(clap::Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
    #[arg(long, default_value = "pipelines.toml", global = true)]
    config: PathBuf,
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
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

pub fn run(args: KeysArgs) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        data_dir: args.data_dir,
        ..Overrides::default()
    };
    let config = load_config(&args.config, overrides)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let data_dir = &config.server.data_dir;
        adpipe::auth::create_private_dir(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let url = config.metadata.url_or_default(data_dir);
        let metadata = Metadata::open(&url).await.context("opening metadata")?;
        execute(&metadata, args.command).await
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn execute(metadata: &Metadata, command: KeysCommand) -> anyhow::Result<()> {
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
    Ok(())
}

/// The audit record of a change made from the command line.
fn audit(tenant: &str, action: &str, target: &str) -> AuditEntry {
    AuditEntry {
        id: uuid::Uuid::new_v4().to_string(),
        at_ms: chrono::Utc::now().timestamp_millis(),
        tenant: tenant.to_owned(),
        actor: "cli".into(),
        action: action.into(),
        target: target.into(),
        status: 0,
        request_id: None,
    }
}
