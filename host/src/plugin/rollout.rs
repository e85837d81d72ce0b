//! Fleet rollout: a component deployed once (`POST /v1/plugins/{name}/versions`,
//! `adpipe plugin deploy`) is checked as a reload checks it, stored in the
//! shared metadata store by content hash ([`crate::metadata::plugin_registry`])
//! and made the version the fleet — or one pipeline, a canary — should run.
//! Every host converges without a restart: told at once (PostgreSQL
//! `LISTEN/NOTIFY`; the deploying host reconciles before it answers) and,
//! as the safety net, every `[plugin_registry] reconcile_seconds`. A host
//! fetches the bytes, checks their hash, compiles them off the async threads
//! and swaps them in as a local reload does (calls already running finish on
//! the old version), then reports what it serves.

use std::sync::OnceLock;

use crate::app::App;
use crate::metadata::plugin_registry::{HostReport, StoredVersion};
use crate::plugin::registry::{PluginSlot, ReloadOutcome};

/// Why a deployment was refused (nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("no adapter plugin named `{0}`")]
    UnknownPlugin(String),
    #[error("no pipeline `{pipeline}` runs plugin `{plugin}`")]
    UnknownPipeline { plugin: String, pipeline: String },
    #[error("the component was refused: {0}")]
    Refused(String),
    #[error("this deployment accepts only components signed by a trusted key ([plugin_registry] trusted_keys): {0}")]
    Unsigned(String),
    #[error("no stored version of `{plugin}` has content hash `{hash}`")]
    UnknownVersion { plugin: String, hash: String },
    #[error("`{0}` has no earlier fleet-wide version to return to")]
    NothingToRollBack(String),
    #[error("the plugin registry: {0}")]
    Metadata(#[from] crate::metadata::MetadataError),
}

/// This process among the fleet: host name, process id and a random suffix.
pub fn host_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "host".into());
        format!(
            "{host}-{}-{:04x}",
            std::process::id(),
            rand::random::<u16>()
        )
    })
}

fn adapter_slot<'a>(
    app: &'a App,
    plugin: &str,
) -> Result<&'a std::sync::Arc<PluginSlot>, DeployError> {
    app.plugins
        .get(plugin)
        .ok_or_else(|| DeployError::UnknownPlugin(plugin.to_owned()))
}

/// Check `component` as a reload does (and its signature when the
/// deployment requires one), store it, and make it the version of `plugin`
/// on `pipeline` (a canary) or on the whole fleet; then converge this host
/// and tell the others. Returns the stored version.
pub async fn deploy(
    app: &App,
    plugin: &str,
    pipeline: Option<&str>,
    component: Vec<u8>,
    signature: Option<&str>,
    actor: &str,
) -> Result<StoredVersion, DeployError> {
    let slot = adapter_slot(app, plugin)?;
    if let Some(pipeline) = pipeline {
        if !app
            .pipelines
            .values()
            .any(|p| p.config.name == pipeline && p.config.adapter == plugin)
        {
            return Err(DeployError::UnknownPipeline {
                plugin: plugin.to_owned(),
                pipeline: pipeline.to_owned(),
            });
        }
    }
    let trusted = app.config.plugin_registry.keys();
    let signed_by = if trusted.is_empty() {
        None
    } else {
        let signature =
            signature.ok_or_else(|| DeployError::Unsigned("no signature was sent".into()))?;
        let signer = super::signing::verify(&trusted, &component, signature)
            .map_err(|e| DeployError::Unsigned(e.to_string()))?;
        Some(signer.ok_or_else(|| {
            DeployError::Unsigned("the signature is not by any trusted key".into())
        })?)
    };
    let adapter = slot
        .candidate(
            &app.runtime,
            Some(app.plugin_cache.clone()),
            component.clone(),
        )
        .await
        .map_err(DeployError::Refused)?;
    let version = StoredVersion {
        plugin: plugin.to_owned(),
        content_hash: adapter.content_hash().to_owned(),
        version: adapter.info().version.clone(),
        signed_by,
        deployed_by: actor.to_owned(),
        deployed_at_ms: chrono::Utc::now().timestamp_millis(),
    };
    app.metadata
        .store_plugin_version(&version, &component)
        .await?;
    if pipeline.is_none() {
        remember_baseline(app, slot, actor).await?;
    }
    app.metadata
        .set_desired_plugin(plugin, pipeline, &version.content_hash, actor)
        .await?;
    tracing::info!(plugin, pipeline, version = %version.version, hash = %&version.content_hash[..12],
        actor, "plugin version deployed");
    converge_and_tell(app, plugin).await?;
    Ok(version)
}

/// Make the stored version `content_hash` (by default the one pinned as a
/// canary) the version of the whole fleet, clearing the pins.
pub async fn promote(
    app: &App,
    plugin: &str,
    content_hash: Option<&str>,
    actor: &str,
) -> Result<String, DeployError> {
    adapter_slot(app, plugin)?;
    let desired = app.metadata.desired_plugin(plugin).await?;
    let hash = match content_hash {
        Some(hash) => hash.to_owned(),
        None => desired
            .iter()
            .find(|d| d.pipeline.is_some())
            .map(|d| d.content_hash.clone())
            .ok_or_else(|| DeployError::UnknownVersion {
                plugin: plugin.to_owned(),
                hash: "(no canary is pinned)".into(),
            })?,
    };
    if app
        .metadata
        .plugin_component(plugin, &hash)
        .await?
        .is_none()
    {
        return Err(DeployError::UnknownVersion {
            plugin: plugin.to_owned(),
            hash,
        });
    }
    remember_baseline(app, adapter_slot(app, plugin)?, actor).await?;
    app.metadata
        .set_desired_plugin(plugin, None, &hash, actor)
        .await?;
    converge_and_tell(app, plugin).await?;
    Ok(hash)
}

/// Return the fleet to the version it ran before (pins cleared).
pub async fn rollback(app: &App, plugin: &str, actor: &str) -> Result<(), DeployError> {
    adapter_slot(app, plugin)?;
    if !app.metadata.rollback_plugin(plugin, actor).await? {
        return Err(DeployError::NothingToRollBack(plugin.to_owned()));
    }
    converge_and_tell(app, plugin).await
}

/// Before the registry first sets a fleet-wide version of a plugin, store
/// the version this host serves from its file and make it the fleet's, so
/// that a rollback has it to return to.
async fn remember_baseline(app: &App, slot: &PluginSlot, actor: &str) -> Result<(), DeployError> {
    let plugin = &slot.config.name;
    let desired = app.metadata.desired_plugin(plugin).await?;
    if desired.iter().any(|d| d.pipeline.is_none()) {
        return Ok(());
    }
    let serving = slot.adapter();
    let Ok(bytes) = tokio::fs::read(&slot.config.path).await else {
        return Ok(());
    };
    if super::content_hash(&bytes) != serving.content_hash() {
        return Ok(()); // the file changed since it was loaded: no baseline to vouch for
    }
    let baseline = StoredVersion {
        plugin: plugin.clone(),
        content_hash: serving.content_hash().to_owned(),
        version: serving.info().version.clone(),
        signed_by: None,
        deployed_by: format!("{actor} (the file serving before the first deployment)"),
        deployed_at_ms: chrono::Utc::now().timestamp_millis(),
    };
    app.metadata.store_plugin_version(&baseline, &bytes).await?;
    app.metadata
        .set_desired_plugin(plugin, None, &baseline.content_hash, actor)
        .await?;
    Ok(())
}

async fn converge_and_tell(app: &App, plugin: &str) -> Result<(), DeployError> {
    reconcile_plugin(app, plugin).await?;
    app.metadata.notify_plugins_changed(plugin).await?;
    Ok(())
}

/// Serialize this host's reconciles (a notification and the timer may
/// coincide with a deploy answered here).
fn reconciling() -> &'static tokio::sync::Mutex<()> {
    static LOCK: OnceLock<tokio::sync::Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| tokio::sync::Mutex::new(()))
}

/// Converge every adapter plugin on what the registry says.
pub async fn reconcile(app: &App) {
    for plugin in app.plugins.keys() {
        if let Err(e) = reconcile_plugin(app, plugin).await {
            tracing::warn!(plugin = %plugin, "reconciling with the plugin registry failed: {e}");
        }
    }
}

/// Converge `plugin` on the registry: the fleet-wide version, then each
/// pinned pipeline's; report what this host serves.
pub async fn reconcile_plugin(app: &App, plugin: &str) -> Result<(), DeployError> {
    let _one = reconciling().lock().await;
    let slot = adapter_slot(app, plugin)?;
    let desired = app.metadata.desired_plugin(plugin).await?;
    let mut errors: Vec<String> = Vec::new();
    let mut pinned: Vec<&str> = Vec::new();
    for want in &desired {
        let serving = match &want.pipeline {
            None => slot.adapter(),
            Some(pipeline) => slot.adapter_for(pipeline),
        };
        if let Some(pipeline) = &want.pipeline {
            pinned.push(pipeline);
        }
        if serving.content_hash() == want.content_hash {
            continue;
        }
        let Some(bytes) = app
            .metadata
            .plugin_component(plugin, &want.content_hash)
            .await?
        else {
            errors.push(format!("version {} is not stored", want.content_hash));
            continue;
        };
        if super::content_hash(&bytes) != want.content_hash {
            errors.push(format!(
                "the stored bytes of {} do not hash to it; not loaded",
                want.content_hash
            ));
            continue;
        }
        match &want.pipeline {
            None => {
                if let ReloadOutcome::Rejected { reason, .. } = slot
                    .install(&app.runtime, Some(app.plugin_cache.clone()), bytes)
                    .await
                {
                    errors.push(reason);
                }
            }
            Some(pipeline) => {
                match slot
                    .candidate(&app.runtime, Some(app.plugin_cache.clone()), bytes)
                    .await
                {
                    Ok(adapter) => slot.pin(pipeline, adapter),
                    Err(reason) => errors.push(format!("pipeline `{pipeline}`: {reason}")),
                }
            }
        }
    }
    slot.unpin_except(&pinned);
    report(app, plugin, slot, errors).await
}

/// Record what this host serves for `plugin` (fleet-wide and per pin).
async fn report(
    app: &App,
    plugin: &str,
    slot: &PluginSlot,
    errors: Vec<String>,
) -> Result<(), DeployError> {
    let now = chrono::Utc::now().timestamp_millis();
    let last_error = (!errors.is_empty()).then(|| errors.join("; "));
    if let Some(error) = &last_error {
        tracing::warn!(
            plugin,
            "this host could not converge on the registry: {error}"
        );
    }
    let current = slot.adapter();
    let mut reports = vec![HostReport {
        host: host_id().to_owned(),
        plugin: plugin.to_owned(),
        pipeline: None,
        content_hash: current.content_hash().to_owned(),
        version: current.info().version.clone(),
        last_error,
        seen_at_ms: now,
    }];
    for (pipeline, loaded) in slot.pins() {
        reports.push(HostReport {
            host: host_id().to_owned(),
            plugin: plugin.to_owned(),
            pipeline: Some(pipeline),
            content_hash: loaded.adapter.content_hash().to_owned(),
            version: loaded.adapter.info().version.clone(),
            last_error: None,
            seen_at_ms: now,
        });
    }
    app.metadata
        .report_plugin_host(host_id(), plugin, &reports)
        .await?;
    Ok(())
}

/// Reconcile now, on every registry notification, and every
/// `reconcile_seconds`.
pub fn spawn(app: &App) {
    let app = app.clone();
    tokio::spawn(async move {
        let mut listener = match app.metadata.listen_plugins_changed().await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!("listening for plugin registry changes failed (reconciling every {} s instead): {e}",
                    app.config.plugin_registry.reconcile_seconds);
                None
            }
        };
        let mut every = tokio::time::interval(app.config.plugin_registry.reconcile_every());
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            match listener.as_mut() {
                Some(listener) => {
                    tokio::select! {
                        _ = every.tick() => reconcile(&app).await,
                        told = listener.recv() => match told {
                            Ok(note) => {
                                let plugin = note.payload().to_owned();
                                if app.plugins.contains_key(&plugin) {
                                    if let Err(e) = reconcile_plugin(&app, &plugin).await {
                                        tracing::warn!(plugin = %plugin, "reconciling with the plugin registry failed: {e}");
                                    }
                                }
                            }
                            Err(e) => {
                                tracing::warn!("plugin registry notifications: {e}");
                                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                            }
                        },
                    }
                }
                None => {
                    every.tick().await;
                    reconcile(&app).await;
                }
            }
        }
    });
}

/// How long a host's report counts as live in `GET /v1/plugins`.
pub fn live_window_ms(app: &App) -> i64 {
    i64::try_from(app.config.plugin_registry.reconcile_seconds)
        .unwrap_or(10)
        .saturating_mul(3_000)
}
