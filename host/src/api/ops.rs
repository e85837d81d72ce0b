//! Operational routes: `/healthz` (process up), `/readyz` (bus, store and
//! metadata reachable), and the admin/analyst listings.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{ApiError, Caller};
use crate::app::App;
use crate::auth::Role;
use crate::plugin::SignatureScheme;

/// `GET /healthz`.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`.
pub async fn readyz(State(app): State<App>) -> Response {
    let bus = app.bus.ping().await.map_err(|e| e.to_string());
    let store = app.store.ping().await.map_err(|e| e.to_string());
    let metadata = app.metadata.ping().await.map_err(|e| e.to_string());
    let check = |r: &Result<(), String>| match r {
        Ok(()) => json!("ok"),
        Err(e) => json!(e),
    };
    let ready = bus.is_ok() && store.is_ok() && metadata.is_ok();
    let lag = app.bus.head().saturating_sub(app.store.applied_offset());
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": {"bus": check(&bus), "store": check(&store), "metadata": check(&metadata)},
        "bus_lag_records": lag,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /v1/pipelines` (admin): the caller's tenant's pipelines.
pub async fn pipelines(State(app): State<App>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    let mut list: Vec<_> = app
        .pipelines
        .values()
        .filter(|p| p.config.tenant == caller.0.tenant)
        .map(|p| {
            json!({
                "name": p.config.name,
                "tenant": p.config.tenant,
                "adapter": p.config.adapter,
                "platform": p.adapter().info().platform,
                "webhooks": !matches!(p.adapter().info().signature, SignatureScheme::None),
                "webhook_secret_set": p.webhook_secret.is_some(),
                "options": p.config.options,
            })
        })
        .collect();
    list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(Json(json!({ "pipelines": list })).into_response())
}

fn tenant_pipeline<'a>(
    app: &'a App,
    caller: &Caller,
    name: &str,
) -> Result<&'a crate::app::Pipeline, ApiError> {
    app.pipelines
        .get(name)
        .filter(|p| p.config.tenant == caller.0.tenant)
        .ok_or_else(|| {
            ApiError::not_found("unknown_pipeline", format!("no pipeline named `{name}`"))
        })
}

/// `POST /v1/pipelines/{pipeline}/pull` (admin): pull every account now.
pub async fn pull_now(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    let pipeline = tenant_pipeline(&app, &caller, &name)?;
    if pipeline.config.pull.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "pull_not_configured",
            format!("pipeline `{name}` has no [pipelines.pull] section"),
        ));
    }
    let runs = crate::pull::pull_pipeline(&app, pipeline).await;
    Ok(Json(json!({ "runs": runs })).into_response())
}

/// `GET /v1/pipelines/{pipeline}/pulls` (admin): recent pull runs.
pub async fn pull_runs(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    tenant_pipeline(&app, &caller, &name)?;
    let runs = app
        .metadata
        .pull_runs(&caller.0.tenant, &name, 100)
        .await
        .map_err(|e| ApiError::internal("reading pull runs", e))?;
    Ok(Json(json!({ "runs": runs })).into_response())
}

/// `GET /v1/plugins` (admin): every plugin, the version serving, its state.
pub async fn plugins(State(app): State<App>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    let mut list: Vec<serde_json::Value> = app
        .plugins
        .values()
        .map(|slot| json!(slot.report()))
        .collect();
    for (name, slot) in &app.metric_plugins {
        let plugin = slot.plugin();
        let (reloads, rejected_reloads, last_error) = slot.reload_status();
        let info = plugin.info();
        let metrics: Vec<_> = info
            .metrics
            .iter()
            .map(|m| {
                let unit = match m.unit {
                    crate::plugin::metric::Unit::Ratio => "ratio",
                    crate::plugin::metric::Unit::Currency => "currency",
                    crate::plugin::metric::Unit::Count => "count",
                };
                json!({"name": m.name, "unit": unit, "description": m.description, "inputs": m.inputs})
            })
            .collect();
        list.push(json!({
            "name": name, "kind": "metric", "version": info.version, "content_hash": plugin.content_hash(),
            "state": "active", "metrics": metrics, "reloads": reloads, "rejected_reloads": rejected_reloads,
            "last_error": last_error, "path": slot.config.path.display().to_string(),
        }));
    }
    Ok(Json(json!({ "plugins": list })).into_response())
}

/// `POST /v1/plugins/{name}/reload` (admin): load the plugin's file again now.
pub async fn reload_plugin(
    State(app): State<App>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Role::Admin)?;
    let outcome = if let Some(slot) = app.plugins.get(&name) {
        slot.reload(&app.runtime, Some(app.plugin_cache.clone()))
            .await
    } else if let Some(slot) = app.metric_plugins.get(&name) {
        slot.reload(&app.runtime).await
    } else {
        return Err(ApiError::not_found(
            "unknown_plugin",
            format!("no plugin named `{name}`"),
        ));
    };
    let status = match outcome {
        crate::plugin::registry::ReloadOutcome::Rejected { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::OK,
    };
    Ok((status, Json(json!({ "plugin": name, "result": outcome }))).into_response())
}

/// `GET /v1/dead-letters` (analyst): the newest kept payloads of the caller's tenant.
pub async fn dead_letters(
    State(app): State<App>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    caller.require(Role::Analyst)?;
    let limit = match query.get("limit") {
        None => 100,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| {
                ApiError::invalid_parameter("limit", "must be a number from 1 to 1000")
            })?,
    };
    let letters = app
        .metadata
        .dead_letters(&caller.0.tenant, limit)
        .await
        .map_err(|e| ApiError::internal("reading dead letters", e))?;
    Ok(Json(json!({ "dead_letters": letters })).into_response())
}

/// `POST /v1/dead-letters/{id}/retry` (admin): run a kept payload through
/// its pipeline again (after a fix or a reload); once per dead letter.
pub async fn retry_dead_letter(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    use crate::process::{process, Origin, Overrides, Payload};
    caller.require(Role::Admin)?;
    let letter = app
        .metadata
        .dead_letter(&caller.0.tenant, &id)
        .await
        .map_err(|e| ApiError::internal("reading the dead letter", e))?
        .ok_or_else(|| {
            ApiError::not_found("unknown_dead_letter", format!("no dead letter `{id}`"))
        })?;
    if letter.retried_at_ms.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_retried",
            format!("dead letter `{id}` was retried already"),
        ));
    }
    let pipeline = tenant_pipeline(&app, &caller, &letter.pipeline)?;
    let (origin, payload) = match letter.source.as_str() {
        "webhook" => (
            Origin::Webhook,
            Payload::Webhook(crate::plugin::WebhookRequest {
                query: vec![],
                headers: vec![],
                body: letter.payload,
            }),
        ),
        "pull" => (Origin::Pull, Payload::Report(letter.payload)),
        _ => (Origin::Report, Payload::Report(letter.payload)),
    };
    let overrides = Overrides {
        account_id: letter.account_id,
        currency: letter.currency,
        options: vec![],
    };
    let accepted = process(&app, pipeline, origin, payload, overrides)
        .await
        .map_err(super::ingest::failure_response)?;
    app.metadata
        .mark_retried(&caller.0.tenant, &id)
        .await
        .map_err(|e| ApiError::internal("marking the dead letter", e))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "accepted": accepted.rows, "dead_letter_id": id })),
    )
        .into_response())
}

/// `GET /metrics` (admin): Prometheus text format — plugins (calls,
/// failures, reloads, quarantine), bus lag, dead letters.
pub async fn metrics(State(app): State<App>, caller: Caller) -> Result<Response, ApiError> {
    use std::fmt::Write as _;
    caller.require(Role::Admin)?;
    let mut out = String::new();
    fn family(out: &mut String, name: &str, kind: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    family(
        &mut out,
        "adpipe_plugin_calls_total",
        "counter",
        "Calls into the plugin version serving now.",
    );
    let reports: Vec<_> = app.plugins.values().map(|slot| slot.report()).collect();
    for r in &reports {
        let _ = writeln!(
            out,
            "adpipe_plugin_calls_total{{plugin=\"{}\",version=\"{}\"}} {}",
            r.name, r.version, r.calls
        );
    }
    family(
        &mut out,
        "adpipe_plugin_failures_total",
        "counter",
        "Failed calls (traps, timeouts, rejected payloads).",
    );
    for r in &reports {
        let _ = writeln!(
            out,
            "adpipe_plugin_failures_total{{plugin=\"{}\",version=\"{}\"}} {}",
            r.name, r.version, r.failures
        );
    }
    family(
        &mut out,
        "adpipe_plugin_reloads_total",
        "counter",
        "Reloads by result.",
    );
    for r in &reports {
        let _ = writeln!(
            out,
            "adpipe_plugin_reloads_total{{plugin=\"{}\",result=\"reloaded\"}} {}",
            r.name, r.reloads
        );
        let _ = writeln!(
            out,
            "adpipe_plugin_reloads_total{{plugin=\"{}\",result=\"rejected\"}} {}",
            r.name, r.rejected_reloads
        );
    }
    family(
        &mut out,
        "adpipe_plugin_quarantined",
        "gauge",
        "1 while the plugin's circuit breaker is open.",
    );
    for r in &reports {
        let _ = writeln!(
            out,
            "adpipe_plugin_quarantined{{plugin=\"{}\"}} {}",
            r.name,
            u8::from(r.state == "quarantined")
        );
    }
    family(
        &mut out,
        "adpipe_bus_lag_records",
        "gauge",
        "Durable bus records not yet applied to the store.",
    );
    let _ = writeln!(
        out,
        "adpipe_bus_lag_records {}",
        app.bus.head().saturating_sub(app.store.applied_offset())
    );
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        out,
    )
        .into_response())
}

/// Any other path.
pub async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such route; see the README for the API")
}
