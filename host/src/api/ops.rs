//! Operational routes: `/healthz` (process up), `/readyz` (bus, store and
//! metadata reachable), and the admin/analyst listings.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::openapi::{
    Accepted, DeadLetterContent, DeadLetterList, ErrorBody, Health, PipelineList, PluginList,
    PullRunList, Readiness, ReloadAnswer, ReplayAnswer,
};
use super::{tenant_pipeline, ApiError, Caller, Params, PathParam};
use crate::app::App;
use crate::plugin::registry::Unavailable;
use crate::plugin::SignatureScheme;

/// `GET /healthz`.
#[utoipa::path(get, path = "/healthz", tag = "operations", description = "The process is up.",
    responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`.
#[utoipa::path(get, path = "/readyz", tag = "operations", description = "Bus, store and metadata are reachable.",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(app): State<App>) -> Response {
    let bus = app.bus.ping().await.map_err(|e| e.to_string());
    let store = app.store.ping().await.map_err(|e| e.to_string());
    let metadata = app.metadata.ping().await.map_err(|e| e.to_string());
    let check = |r: &Result<(), String>| match r {
        Ok(()) => json!("ok"),
        Err(e) => json!(e),
    };
    let ready = bus.is_ok() && store.is_ok() && metadata.is_ok();
    let lag = app.bus.lag(&app.store).await;
    // Platform API versions near or past their sunset: not a reason to take
    // the process out of rotation, but said here for every probe to see.
    let mut warnings: Vec<String> = app
        .pipelines
        .values()
        .flat_map(|p| {
            p.api_version()
                .and_then(|(_, advice)| advice)
                .map(|a| format!("pipeline `{}`: {a}", p.config.name))
                .into_iter()
                .chain(
                    p.unknown_options
                        .iter()
                        .map(|issue| format!("pipeline `{}`: {issue} (ignored)", p.config.name)),
                )
                .collect::<Vec<_>>()
        })
        .collect();
    // A plugin refused at start (it fails its own samples) serves nothing,
    // but the others do: the process stays in rotation and says which.
    let refused: serde_json::Map<String, serde_json::Value> = app
        .plugins
        .iter()
        .filter_map(|(name, slot)| Some((name.clone(), json!(slot.refused()?))))
        .collect();
    warnings.extend(refused.iter().map(|(name, reason)| {
        format!(
            "plugin `{name}` is refused: {}",
            reason.as_str().unwrap_or_default()
        )
    }));
    warnings.sort();
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "checks": {"bus": check(&bus), "store": check(&store), "metadata": check(&metadata)},
        "bus_lag_records": lag,
        "refused_plugins": refused,
        "warnings": warnings,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `GET /v1/pipelines` (admin): the caller's tenant's pipelines.
#[utoipa::path(get, path = "/v1/pipelines", tag = "admin", description = "The tenant's pipelines.",
    responses((status = 200, body = PipelineList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn pipelines(State(app): State<App>, caller: Caller) -> Result<Response, ApiError> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut last_pulls = HashMap::new();
    for p in app
        .pipelines
        .values()
        .filter(|p| p.config.tenant == caller.0.tenant && p.config.pull.is_some())
    {
        let runs = app
            .metadata
            .pull_runs(&caller.0.tenant, &p.config.name, 1)
            .await
            .map_err(|e| ApiError::internal("reading pull runs", e))?;
        last_pulls.insert(p.config.name.clone(), runs.into_iter().next());
    }
    let mut list: Vec<_> = app
        .pipelines
        .values()
        .filter(|p| p.config.tenant == caller.0.tenant)
        .map(|p| {
            let adapter = p.adapter();
            let (rows_today, last_accepted_at_ms) = p.stats.snapshot(now_ms);
            let state = match p.plugin.unavailable(&p.config.name) {
                Some(Unavailable::Refused { .. }) => "refused",
                Some(Unavailable::Quarantined { .. }) => "quarantined",
                None => "active",
            };
            let pull = p.config.pull.as_ref().map(|pull| {
                json!({
                    "accounts": pull.accounts,
                    "every_s": pull.every.map(|d| d.as_secs()),
                    "lookback_days": pull.lookback_days.unwrap_or(adapter.info().default_lookback_days),
                })
            });
            json!({
                "adapter_version": adapter.info().version,
                "adapter_state": state,
                "rows_accepted_today": rows_today,
                "last_accepted_at_ms": last_accepted_at_ms,
                "pull": pull,
                "last_pull": last_pulls.get(&p.config.name).cloned().flatten(),
                "name": p.config.name,
                "tenant": p.config.tenant,
                "adapter": p.config.adapter,
                "platform": p.adapter().info().platform,
                "webhooks": !matches!(p.adapter().info().signature, SignatureScheme::None),
                "webhook_secret_set": p.webhook_secret.is_some(),
                "options": p.config.options,
                "unknown_options": p.unknown_options,
                "breaker": p.plugin.breaker(&p.config.name),
            })
        })
        .collect();
    list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let lag = app.bus.lag(&app.store).await;
    Ok(Json(json!({ "pipelines": list, "bus_lag_records": lag })).into_response())
}

/// `POST /v1/pipelines/{pipeline}/pull` (admin): pull every account now.
#[utoipa::path(post, path = "/v1/pipelines/{pipeline}/pull", tag = "admin", description = "Pull every account of the pipeline now.",
    params(("pipeline" = String, Path, description = "Pipeline name")),
    responses((status = 200, body = PullRunList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "The pipeline has no pull section", body = ErrorBody)))]
pub async fn pull_now(
    State(app): State<App>,
    caller: Caller,
    PathParam(name): PathParam,
) -> Result<Response, ApiError> {
    let pipeline = tenant_pipeline(&app, &caller.0.tenant, &name)?;
    if pipeline.config.pull.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "pull_not_configured",
            format!("pipeline `{name}` has no [pipelines.pull] section"),
        ));
    }
    let runs = crate::pipeline::pull::pull_pipeline(&app, pipeline).await;
    Ok(Json(json!({ "runs": runs })).into_response())
}

/// `GET /v1/pipelines/{pipeline}/pulls` (admin): recent pull runs.
#[utoipa::path(get, path = "/v1/pipelines/{pipeline}/pulls", tag = "admin", description = "Recent pull runs of the pipeline.",
    params(("pipeline" = String, Path, description = "Pipeline name")),
    responses((status = 200, body = PullRunList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn pull_runs(
    State(app): State<App>,
    caller: Caller,
    PathParam(name): PathParam,
) -> Result<Response, ApiError> {
    tenant_pipeline(&app, &caller.0.tenant, &name)?;
    let runs = app
        .metadata
        .pull_runs(&caller.0.tenant, &name, 100)
        .await
        .map_err(|e| ApiError::internal("reading pull runs", e))?;
    Ok(Json(json!({ "runs": runs })).into_response())
}

/// `GET /v1/plugins` (admin): every plugin, the version serving, its state.
#[utoipa::path(get, path = "/v1/plugins", tag = "admin", description = "Every plugin: version, content hash, state, calls, failures.",
    responses((status = 200, body = PluginList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn plugins(State(app): State<App>) -> Result<Response, ApiError> {
    let mut registry = HashMap::new();
    for name in app.plugins.keys() {
        registry.insert(
            name.clone(),
            super::rollout::registry_entry(&app, name).await?,
        );
    }
    let mut list: Vec<serde_json::Value> = app
        .plugins
        .values()
        .map(|slot| {
            let mut entry = json!(slot.report());
            // Every pipeline on this adapter, with its own circuit breaker.
            let breakers: serde_json::Map<String, serde_json::Value> = app
                .pipelines
                .values()
                .filter(|p| p.config.adapter == slot.config.name)
                .map(|p| {
                    (
                        p.config.name.clone(),
                        json!(p.plugin.breaker(&p.config.name)),
                    )
                })
                .collect();
            entry["pipelines"] = breakers.into();
            entry["registry"] = registry.remove(&slot.config.name).unwrap_or_default();
            entry
        })
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
#[utoipa::path(post, path = "/v1/plugins/{name}/reload", tag = "admin", description = "Load the plugin's file again now; a broken build is refused and the serving version kept.",
    params(("name" = String, Path, description = "Plugin name")),
    responses((status = 200, body = ReloadAnswer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, description = "The new build was refused", body = ReloadAnswer)))]
pub async fn reload_plugin(
    State(app): State<App>,
    PathParam(name): PathParam,
) -> Result<Response, ApiError> {
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
#[utoipa::path(get, path = "/v1/dead-letters", tag = "admin", description = "The tenant's newest dead letters (analyst or admin).",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "At most this many (1 to 1000, default 100)")),
    responses((status = 200, body = DeadLetterList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn dead_letters(
    State(app): State<App>,
    caller: Caller,
    Params(query): Params,
) -> Result<Response, ApiError> {
    let limit = limit_param(&query)?;
    let letters = app
        .metadata
        .dead_letters(&caller.0.tenant, limit)
        .await
        .map_err(|e| ApiError::internal("reading dead letters", e))?;
    Ok(Json(json!({ "dead_letters": letters })).into_response())
}

/// `GET /v1/dead-letters/{id}` (analyst): one dead letter of the caller's
/// tenant with its payload, opened from its encryption at rest.
#[utoipa::path(get, path = "/v1/dead-letters/{id}", tag = "admin", description = "One dead letter of the tenant with its payload (analyst or admin).",
    params(("id" = String, Path, description = "Dead letter id")),
    responses((status = 200, body = DeadLetterContent), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn dead_letter(
    State(app): State<App>,
    caller: Caller,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    let letter = app
        .metadata
        .dead_letter(&caller.0.tenant, &id)
        .await
        .map_err(|e| ApiError::internal("reading the dead letter", e))?
        .ok_or_else(|| {
            ApiError::not_found("unknown_dead_letter", format!("no dead letter `{id}`"))
        })?;
    let (payload, payload_base64) = match String::from_utf8(letter.payload) {
        Ok(text) => (Some(text), None),
        Err(e) => {
            use base64::Engine as _;
            let bytes = e.into_bytes();
            (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            )
        }
    };
    Ok(Json(json!({
        "id": id,
        "pipeline": letter.pipeline,
        "source": letter.source,
        "received_at_ms": letter.received_at_ms,
        "code": letter.code,
        "message": letter.message,
        "retried_at_ms": letter.retried_at_ms,
        "payload": payload,
        "payload_base64": payload_base64,
    }))
    .into_response())
}

/// Body of `POST /v1/replay`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Pipeline whose kept payloads to replay.
    pub pipeline: String,
    /// First day (UTC) payloads were received, inclusive (YYYY-MM-DD).
    #[schema(format = Date)]
    pub from: String,
    /// Last day (UTC) payloads were received, inclusive (YYYY-MM-DD); not before `from`.
    #[schema(format = Date)]
    pub to: String,
}

/// `POST /v1/replay` (admin): run the pipeline's kept payloads received in
/// `[from, to]` through the adapter version serving now; their rows replace
/// the ones derived before (newer observations win), so totals follow the
/// new adapter. Deltas keep their first application (same dedup keys).
/// Payloads are read a page at a time (never the whole range in memory);
/// a range longer than `api.max_range_days` is refused.
#[utoipa::path(post, path = "/v1/replay", tag = "admin", request_body = ReplayRequest,
    description = "Re-derive rows from kept payloads through the adapter serving now.",
    responses((status = 200, body = ReplayAnswer), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, description = "Bus unavailable", body = ErrorBody)))]
pub async fn replay(
    State(app): State<App>,
    caller: Caller,
    body: Result<Json<ReplayRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    use crate::pipeline::process::{process, FailureKind, Overrides};
    let Json(request) = body.map_err(|e| ApiError::invalid_parameter("body", e.body_text()))?;
    let day = |name: &str, value: &str| {
        chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| {
            ApiError::invalid_parameter(
                name,
                format!("`{value}` is not a date of the form YYYY-MM-DD"),
            )
        })
    };
    let (from, to) = (day("from", &request.from)?, day("to", &request.to)?);
    if to < from {
        return Err(ApiError::invalid_parameter(
            "to",
            "must not be before `from`",
        ));
    }
    let max_days = app.config.api.max_range_days;
    let days = (to - from).num_days() + 1;
    if days > i64::from(max_days) {
        return Err(ApiError::invalid_parameter(
            "to",
            format!(
                "the replay range spans {days} days, more than api.max_range_days ({max_days}); replay it in shorter ranges"
            ),
        ));
    }
    let pipeline = tenant_pipeline(&app, &caller.0.tenant, &request.pipeline)?;
    // Where kept copies travel with their rows, the consumer keeps them:
    // wait until it has reached what was accepted before this request.
    if app.bus.carries_payloads()
        && !app
            .bus
            .settled(&app.store, std::time::Duration::from_secs(10))
            .await
    {
        tracing::warn!(pipeline = %request.pipeline, "replaying while the consumer is behind: the newest payloads may not be kept yet");
    }
    let millis = |d: chrono::NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis())
            .unwrap_or(0)
    };
    let mut cursor = crate::metadata::PayloadCursor::new(
        &caller.0.tenant,
        &request.pipeline,
        millis(from),
        millis(to + chrono::Days::new(1)),
    );
    let (mut payloads, mut rows, mut failed, mut errors) = (0usize, 0usize, 0usize, Vec::new());
    loop {
        let page = app
            .metadata
            .next_kept_payloads(&mut cursor, crate::metadata::PAYLOAD_PAGE)
            .await
            .map_err(|e| ApiError::internal("reading kept payloads", e))?;
        if page.is_empty() {
            break;
        }
        for payload in page {
            payloads += 1;
            let (origin, body) = kept_payload(&payload.source, payload.payload);
            let overrides = Overrides {
                account_id: payload.account_id,
                currency: payload.currency,
                options: vec![],
                replay: true,
            };
            match process(&app, pipeline, origin, body, overrides).await {
                Ok(accepted) => rows += accepted.rows,
                Err(failure) if failure.kind == FailureKind::Unavailable => {
                    return Err(super::ingest::failure_response(failure));
                }
                Err(failure) => {
                    failed += 1;
                    if errors.len() < 10 {
                        errors.push(json!({"payload": payload.id, "code": failure.code, "message": failure.message}));
                    }
                }
            }
        }
    }
    Ok(Json(json!({
        "pipeline": request.pipeline,
        "adapter_version": pipeline.adapter().info().version,
        "payloads": payloads,
        "rows": rows,
        "failed": failed,
        "errors": errors,
    }))
    .into_response())
}

/// A kept payload as it first arrived, by the `source` it was kept from
/// (`webhook`, `pull`, else a pushed report), to run through its pipeline again.
fn kept_payload(
    source: &str,
    body: Vec<u8>,
) -> (
    crate::pipeline::process::Origin,
    crate::pipeline::process::Payload,
) {
    use crate::pipeline::process::{Origin, Payload};
    match source {
        "webhook" => (
            Origin::Webhook,
            Payload::Webhook(crate::plugin::WebhookRequest {
                query: vec![],
                headers: vec![],
                body,
            }),
        ),
        "pull" => (Origin::Pull, Payload::Report(body)),
        _ => (Origin::Report, Payload::Report(body)),
    }
}

/// `limit`: 1 to 1000, default 100.
pub fn limit_param(query: &HashMap<String, String>) -> Result<u32, ApiError> {
    if let Some(unknown) = query.keys().find(|k| k.as_str() != "limit") {
        return Err(ApiError::invalid_parameter(
            unknown,
            "unknown parameter (accepted: limit)",
        ));
    }
    match query.get("limit") {
        None => Ok(100),
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| ApiError::invalid_parameter("limit", "must be a number from 1 to 1000")),
    }
}

/// `POST /v1/dead-letters/{id}/retry` (admin): run a kept payload through
/// its pipeline again (after a fix or a reload); once per dead letter.
#[utoipa::path(post, path = "/v1/dead-letters/{id}/retry", tag = "admin", description = "Run a kept payload through its pipeline again (once).",
    params(("id" = String, Path, description = "Dead letter id")),
    responses((status = 202, body = Accepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Retried already", body = ErrorBody),
        (status = 500, description = "The adapter plugin failed", body = ErrorBody),
        (status = 503, description = "Bus unavailable", body = ErrorBody)))]
pub async fn retry_dead_letter(
    State(app): State<App>,
    caller: Caller,
    PathParam(id): PathParam,
) -> Result<Response, ApiError> {
    use crate::pipeline::process::{process, Overrides};
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
    let pipeline = tenant_pipeline(&app, &caller.0.tenant, &letter.pipeline)?;
    if letter.source == crate::pipeline::consume::SOURCE {
        // Normalized rows the store refused: published to the bus again
        // (after the store was fixed), not parsed again.
        let envelope: crate::row::RowEnvelope = serde_json::from_slice(&letter.payload)
            .map_err(|e| ApiError::internal("reading the kept rows", e))?;
        if envelope.tenant != caller.0.tenant {
            return Err(ApiError::not_found(
                "unknown_dead_letter",
                format!("no dead letter `{id}`"),
            ));
        }
        let trace = crate::telemetry::trace::TraceParent::of(&tracing::Span::current());
        app.bus
            .publish(&envelope, trace.as_ref())
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("the bus cannot take rows right now ({e}); retry later"),
                )
            })?;
        app.metadata
            .mark_retried(&caller.0.tenant, &id)
            .await
            .map_err(|e| ApiError::internal("marking the dead letter", e))?;
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "accepted": envelope.rows.len(), "dead_letter_id": id })),
        )
            .into_response());
    }
    let (origin, payload) = kept_payload(&letter.source, letter.payload);
    let overrides = Overrides {
        account_id: letter.account_id,
        currency: letter.currency,
        options: vec![],
        replay: false,
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
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "prometheus_metrics", description = "Prometheus metrics (OpenMetrics text).",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn metrics(State(app): State<App>) -> Result<Response, ApiError> {
    use crate::telemetry::{
        BreakerLabels, PluginLabels, PluginVersionLabels, ReloadLabels, Telemetry,
    };
    let t = &app.telemetry;
    for r in app.plugins.values().map(|slot| slot.report()) {
        let version = PluginVersionLabels {
            plugin: r.name.clone(),
            version: r.version.clone(),
        };
        Telemetry::set_counter(&t.plugin_calls.get_or_create(&version), r.calls);
        Telemetry::set_counter(&t.plugin_rejections.get_or_create(&version), r.rejections);
        Telemetry::set_counter(&t.plugin_failures.get_or_create(&version), r.failures);
        for (result, n) in [("reloaded", r.reloads), ("rejected", r.rejected_reloads)] {
            let labels = ReloadLabels {
                plugin: r.name.clone(),
                result: result.into(),
            };
            Telemetry::set_counter(&t.plugin_reloads.get_or_create(&labels), n);
        }
        t.plugin_quarantined
            .get_or_create(&PluginLabels {
                plugin: r.name.clone(),
            })
            .set(r.quarantined_pipelines.len() as i64);
        t.plugin_refused
            .get_or_create(&PluginLabels {
                plugin: r.name.clone(),
            })
            .set(i64::from(r.state == "refused"));
    }
    for p in app.pipelines.values() {
        let open = p.plugin.quarantined(&p.config.name).is_some();
        t.pipeline_quarantined
            .get_or_create(&BreakerLabels {
                pipeline: p.config.name.clone(),
                plugin: p.config.adapter.clone(),
            })
            .set(i64::from(open));
    }
    t.bus_lag.set(app.bus.lag(&app.store).await as i64);
    for p in app.pipelines.values() {
        if let Some((used, _)) = p.api_version() {
            if let Some(days) = used.days_left {
                t.api_sunset_days
                    .get_or_create(&crate::telemetry::ApiVersionLabels {
                        pipeline: p.config.name.clone(),
                        platform: p.adapter().info().platform.clone(),
                        api_version: used.version.clone(),
                    })
                    .set(days);
            }
        }
    }
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        t.render(),
    )
        .into_response())
}

/// Any other path.
pub async fn not_found() -> ApiError {
    ApiError::not_found("not_found", "no such route; see the README for the API")
}
