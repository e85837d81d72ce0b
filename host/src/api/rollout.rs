//! The plugin registry's routes (operator): deploy a component to the fleet
//! or to one pipeline as a canary, promote a canary, roll back
//! ([`crate::plugin::rollout`] does the work; `GET /v1/plugins` shows the
//! desired versions and what each live host serves).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::error::body_error;
use super::openapi::{ComponentBytes, DeployAnswer, ErrorBody, RolloutAnswer};
use super::{ApiError, AuditDetail, Caller, Params, PathParam};
use crate::app::App;
use crate::plugin::rollout::{self, DeployError};

/// The header carrying a component's Ed25519 signature (base64).
pub const SIGNATURE_HEADER: &str = "adpipe-signature";

fn deploy_error(error: DeployError) -> ApiError {
    let message = error.to_string();
    match error {
        DeployError::UnknownPlugin(_) => ApiError::not_found("unknown_plugin", message),
        DeployError::UnknownPipeline { .. } => ApiError::not_found("unknown_pipeline", message),
        DeployError::UnknownVersion { .. } => ApiError::not_found("unknown_version", message),
        DeployError::Refused(_) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "component_refused",
            message,
        ),
        DeployError::Unsigned(_) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "signature_required",
            message,
        ),
        DeployError::NothingToRollBack(_) => {
            ApiError::new(StatusCode::CONFLICT, "nothing_to_roll_back", message)
        }
        DeployError::Metadata(e) => ApiError::internal("the plugin registry", e),
    }
}

/// `POST /v1/plugins/{name}/versions` (operator): deploy a component.
#[utoipa::path(post, path = "/v1/plugins/{name}/versions", tag = "admin",
    description = "Deploy a component to every host (or, with `pipeline`, to that pipeline only: a canary). It is checked as a reload checks it (valid component, supported interface, same platform, the plugin's samples) and, with `[plugin_registry] trusted_keys`, its `Adpipe-Signature`; stored by content hash; this host serves it before the answer, the others within seconds.",
    params(("name" = String, Path, description = "Plugin name"),
        ("pipeline" = Option<String>, Query, description = "Pin the version to this pipeline only (a canary)"),
        ("Adpipe-Signature" = Option<String>, Header, description = "Ed25519 signature of the component, base64 (`adpipe plugin sign`)")),
    request_body(content = ComponentBytes, content_type = "application/octet-stream", description = "The component (`.wasm`), as bytes (any content type is read as bytes)"),
    responses((status = 201, body = DeployAnswer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 422, description = "The component failed a check, or is not signed by a trusted key; nothing changed", body = ErrorBody)))]
pub async fn deploy(
    State(app): State<App>,
    caller: Caller,
    PathParam(name): PathParam,
    Params(query): Params,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let component = body.map_err(body_error)?;
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let pipeline = query.get("pipeline").cloned();
    let stored = rollout::deploy(
        &app,
        &name,
        pipeline.as_deref(),
        component.to_vec(),
        signature.as_deref(),
        &caller.0.sub,
    )
    .await
    .map_err(deploy_error)?;
    let detail = AuditDetail(format!(
        "version={} content_hash={}{}",
        stored.version,
        stored.content_hash,
        pipeline
            .as_deref()
            .map_or(String::new(), |p| format!(" pipeline={p}"))
    ));
    Ok((
        StatusCode::CREATED,
        axum::Extension(detail),
        Json(json!({
            "plugin": name, "version": stored.version, "content_hash": stored.content_hash,
            "pipeline": pipeline, "signed_by": stored.signed_by,
        })),
    )
        .into_response())
}

/// `POST /v1/plugins/{name}/promote` (operator): a canary to the whole fleet.
#[utoipa::path(post, path = "/v1/plugins/{name}/promote", tag = "admin",
    description = "Make a stored version (by default the one pinned as a canary) the version of every host and pipeline; pins are cleared.",
    params(("name" = String, Path, description = "Plugin name"),
        ("content_hash" = Option<String>, Query, description = "The stored version to promote (default: the canary)")),
    responses((status = 200, body = RolloutAnswer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn promote(
    State(app): State<App>,
    caller: Caller,
    PathParam(name): PathParam,
    Params(query): Params,
) -> Result<Response, ApiError> {
    let hash = rollout::promote(
        &app,
        &name,
        query.get("content_hash").map(String::as_str),
        &caller.0.sub,
    )
    .await
    .map_err(deploy_error)?;
    let detail = AuditDetail(format!("content_hash={hash}"));
    Ok((
        axum::Extension(detail),
        Json(json!({"plugin": name, "content_hash": hash})),
    )
        .into_response())
}

/// `POST /v1/plugins/{name}/rollback` (operator): back to the previous version.
#[utoipa::path(post, path = "/v1/plugins/{name}/rollback", tag = "admin",
    description = "Return every host to the fleet-wide version that served before the current one; pins are cleared.",
    params(("name" = String, Path, description = "Plugin name")),
    responses((status = 200, body = RolloutAnswer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 409, description = "No earlier version to return to", body = ErrorBody)))]
pub async fn rollback(
    State(app): State<App>,
    caller: Caller,
    PathParam(name): PathParam,
) -> Result<Response, ApiError> {
    rollout::rollback(&app, &name, &caller.0.sub)
        .await
        .map_err(deploy_error)?;
    let hash = app
        .plugins
        .get(&name)
        .map(|slot| slot.adapter().content_hash().to_owned());
    let detail = AuditDetail(format!("content_hash={}", hash.as_deref().unwrap_or("?")));
    Ok((
        axum::Extension(detail),
        Json(json!({"plugin": name, "content_hash": hash})),
    )
        .into_response())
}

/// The registry's view of `plugin` for `GET /v1/plugins`: desired versions
/// (fleet-wide and pins) and what each live host serves.
pub async fn registry_entry(app: &App, plugin: &str) -> Result<serde_json::Value, ApiError> {
    let desired = app
        .metadata
        .desired_plugin(plugin)
        .await
        .map_err(|e| ApiError::internal("reading the plugin registry", e))?;
    let since = chrono::Utc::now().timestamp_millis() - rollout::live_window_ms(app);
    let hosts = app
        .metadata
        .plugin_hosts(plugin, since)
        .await
        .map_err(|e| ApiError::internal("reading the plugin registry", e))?;
    let fleet = desired.iter().find(|d| d.pipeline.is_none());
    let converged = fleet.is_none_or(|want| {
        hosts
            .iter()
            .filter(|h| h.pipeline.is_none())
            .all(|h| h.content_hash == want.content_hash)
    });
    Ok(json!({
        "desired": fleet,
        "canaries": desired.iter().filter(|d| d.pipeline.is_some()).collect::<Vec<_>>(),
        "hosts": hosts,
        "converged": converged,
    }))
}
