//! Ingestion routes: `POST /v1/pipelines/{p}/reports`, `GET|POST /v1/webhooks/{p}`.
//!
//! receive → verify (host-held secrets) → adapt (plugin, off the async
//! runtime) → normalize → durable bus → `202 {"accepted": N}`. A payload the
//! plugin or the normalizer rejects is kept in the dead-letter store.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::error::body_error;
use super::{ApiError, Caller};
use crate::app::{App, Pipeline};
use crate::auth::Role;
use crate::config::is_currency;
use crate::ingest::{normalize, IngestContext, NormalizeError};
use crate::metadata::NewDeadLetter;
use crate::plugin::{
    CallError, ErrorKind, HandshakePlan, ParseContext, SignatureScheme, WebhookRequest,
};
use crate::row::RowEnvelope;
use crate::signature;

/// What to parse.
enum Payload {
    Report(Bytes),
    Webhook(WebhookRequest, Bytes),
}

impl Payload {
    fn source(&self) -> &'static str {
        match self {
            Payload::Report(_) => "report",
            Payload::Webhook(..) => "webhook",
        }
    }
    fn raw(&self) -> &[u8] {
        match self {
            Payload::Report(b) | Payload::Webhook(_, b) => b,
        }
    }
}

fn pipeline<'a>(app: &'a App, name: &str) -> Result<&'a Pipeline, ApiError> {
    app.pipelines.get(name).ok_or_else(|| {
        ApiError::not_found("unknown_pipeline", format!("no pipeline named `{name}`"))
    })
}

/// `POST /v1/pipelines/{pipeline}/reports`: a report-API response body as the platform returned it.
pub async fn push_report(
    State(app): State<App>,
    Path(name): Path<String>,
    caller: Caller,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::Ingest)?;
    let pipeline = pipeline(&app, &name)?;
    if pipeline.config.tenant != caller.0.tenant {
        // Another tenant's pipeline is indistinguishable from a missing one.
        return Err(ApiError::not_found(
            "unknown_pipeline",
            format!("no pipeline named `{name}`"),
        ));
    }
    let Query(query) = query.map_err(|e| ApiError::invalid_parameter("query", e.body_text()))?;
    for key in query.keys() {
        if key != "account_id" && key != "currency" {
            return Err(ApiError::invalid_parameter(
                key,
                "unknown parameter (accepted: account_id, currency)",
            ));
        }
    }
    let account_id = query.get("account_id").filter(|a| !a.is_empty()).cloned();
    let currency = query.get("currency").cloned();
    if let Some(c) = &currency {
        if !is_currency(c) {
            return Err(ApiError::invalid_parameter(
                "currency",
                format!("`{c}` is not an ISO 4217 code such as USD"),
            ));
        }
    }
    let body = body.map_err(body_error)?;
    accept(&app, pipeline, Payload::Report(body), account_id, currency).await
}

/// `GET /v1/webhooks/{pipeline}`: the platform's verification handshake.
pub async fn webhook_handshake(
    State(app): State<App>,
    Path(name): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let pipeline = pipeline(&app, &name)?;
    webhooks_supported(pipeline)?;
    let Query(query) = query.map_err(|e| ApiError::invalid_parameter("query", e.body_text()))?;
    let adapter = pipeline.adapter.clone();
    let plan = tokio::task::spawn_blocking(move || adapter.handshake(&query))
        .await
        .map_err(|e| ApiError::internal("handshake task failed", e))?
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "plugin_failed",
                e.to_string(),
            )
        })?;
    match plan {
        HandshakePlan::EchoIfToken(echo) => {
            let Some(expected) = &pipeline.verify_token else {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "verify_token_unset",
                    format!(
                        "the pipeline's verify token variable {} is not set",
                        pipeline
                            .config
                            .verify_token_env
                            .as_deref()
                            .unwrap_or("(verify_token_env)")
                    ),
                ));
            };
            if bool::from(echo.token.as_bytes().ct_eq(expected.expose().as_bytes())) {
                Ok((
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    echo.challenge,
                )
                    .into_response())
            } else {
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "verify_token_mismatch",
                    "the verify token does not match",
                ))
            }
        }
        HandshakePlan::HmacChallenge(code) => {
            let secret = webhook_secret(pipeline)?;
            let response = signature::hmac_hex(secret.as_bytes(), code.as_bytes());
            Ok(Json(json!({"challengeCode": code, "challengeResponse": response})).into_response())
        }
        HandshakePlan::Reject(reason) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_handshake",
            reason,
        )),
    }
}

/// `POST /v1/webhooks/{pipeline}`: a platform delivery, signature checked by the host.
pub async fn webhook(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let pipeline = pipeline(&app, &name)?;
    let scheme = webhooks_supported(pipeline)?;
    let body = body.map_err(body_error)?;
    let secret = webhook_secret(pipeline)?;
    let header_value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let verified = match scheme {
        SignatureScheme::HmacSha256Body(h) => signature::verify_body(
            secret.as_bytes(),
            &body,
            &h.header,
            header_value(&h.header),
            &h.prefix,
        ),
        SignatureScheme::HmacSha256Timestamped(h) => signature::verify_timestamped(
            secret.as_bytes(),
            &body,
            &h.header,
            header_value(&h.header),
            h.max_age_seconds,
            chrono::Utc::now().timestamp(),
        ),
        SignatureScheme::None => unreachable!("checked by webhooks_supported"),
    };
    verified
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", e.to_string()))?;
    let Query(query) = query.map_err(|e| ApiError::invalid_parameter("query", e.body_text()))?;
    let request = WebhookRequest {
        query,
        headers: headers
            .iter()
            .filter_map(|(k, v)| {
                Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned()))
            })
            .collect(),
        body: body.to_vec(),
    };
    accept(&app, pipeline, Payload::Webhook(request, body), None, None).await
}

fn webhooks_supported(pipeline: &Pipeline) -> Result<SignatureScheme, ApiError> {
    match &pipeline.adapter.info().signature {
        SignatureScheme::None => Err(ApiError::not_found(
            "webhooks_not_supported",
            format!(
                "the `{}` platform sends no metric webhooks; push reports instead",
                pipeline.adapter.info().platform
            ),
        )),
        scheme => Ok(scheme.clone()),
    }
}

fn webhook_secret(pipeline: &Pipeline) -> Result<&str, ApiError> {
    pipeline.webhook_secret.as_ref().map(|s| s.expose()).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "signature_unverifiable",
            format!(
                "the pipeline's webhook secret variable {} is not set, so no delivery can be verified",
                pipeline.config.webhook_secret_env.as_deref().unwrap_or("(webhook_secret_env)")
            ),
        )
    })
}

/// Parse, normalize, make durable.
async fn accept(
    app: &App,
    pipeline: &Pipeline,
    payload: Payload,
    account_id: Option<String>,
    currency: Option<String>,
) -> Result<Response, ApiError> {
    let config = &pipeline.config;
    let context = ParseContext {
        options: pipeline.options.clone(),
        account_id: account_id.clone().or_else(|| config.account_id.clone()),
        currency: currency.clone().or_else(|| config.currency.clone()),
        received_at_ms: chrono::Utc::now().timestamp_millis(),
    };
    let adapter = pipeline.adapter.clone();
    let parsed = {
        let slot = adapter.call_slot().await;
        let (adapter, context) = (adapter.clone(), context.clone());
        let work = match &payload {
            Payload::Report(body) => {
                let body = body.clone();
                tokio::task::spawn_blocking(move || adapter.parse_report(&body, &context))
            }
            Payload::Webhook(request, _) => {
                let request = request.clone();
                tokio::task::spawn_blocking(move || adapter.parse_webhook(&request, &context))
            }
        };
        let result = work.await;
        drop(slot);
        result.map_err(|e| ApiError::internal("plugin task failed", e))?
    };
    let batch = match parsed {
        Ok(batch) => batch,
        Err(error) => {
            let (status, code) = match &error {
                CallError::Rejected(e) => (StatusCode::BAD_REQUEST, rejection_code(e.kind)),
                CallError::Timeout { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "plugin_timeout"),
                CallError::OutOfMemory { .. } => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "plugin_out_of_memory")
                }
                CallError::Trapped { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "plugin_failed"),
            };
            return Err(dead_letter(
                app,
                pipeline,
                &payload,
                ApiError::new(status, code, error.to_string()),
            )
            .await);
        }
    };
    for notice in &batch.notices {
        tracing::info!(pipeline = %config.name, "{}", notice.chars().take(500).collect::<String>());
    }
    let info = adapter.info();
    let ctx = IngestContext {
        platform: &info.platform,
        adapter: &info.name,
        adapter_version: &info.version,
        account_id: context.account_id.as_deref(),
        currency: context.currency.as_deref(),
    };
    let rows = match normalize(&batch, &ctx, app.stamp.next()) {
        Ok(rows) => rows,
        Err(NormalizeError::Client { code, message }) => {
            return Err(dead_letter(
                app,
                pipeline,
                &payload,
                ApiError::new(StatusCode::BAD_REQUEST, code, message),
            )
            .await)
        }
        Err(error @ NormalizeError::Plugin(_)) => {
            let error = ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "invalid_plugin_output",
                error.to_string(),
            );
            return Err(dead_letter(app, pipeline, &payload, error).await);
        }
    };
    let accepted = rows.len();
    if accepted > 0 {
        let envelope = RowEnvelope {
            tenant: config.tenant.clone(),
            pipeline: config.name.clone(),
            rows,
        };
        let record =
            serde_json::to_vec(&envelope).map_err(|e| ApiError::internal("encoding rows", e))?;
        app.bus.append(record).await.map_err(|e| {
            tracing::error!(pipeline = %config.name, "bus append failed: {e}");
            ApiError::unavailable("the bus cannot take rows right now; retry later", 1)
        })?;
    }
    tracing::debug!(pipeline = %config.name, source = payload.source(), accepted, "payload accepted");
    Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": accepted }))).into_response())
}

fn rejection_code(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Malformed => "malformed_payload",
        ErrorKind::InvalidShape => "invalid_shape",
        ErrorKind::InvalidValue => "invalid_value",
        ErrorKind::PlatformError => "platform_error",
        ErrorKind::MissingContext => "missing_context",
        ErrorKind::Unsupported => "unsupported_payload",
    }
}

/// Keep the payload with the reason; the returned error names the dead letter.
async fn dead_letter(
    app: &App,
    pipeline: &Pipeline,
    payload: &Payload,
    error: ApiError,
) -> ApiError {
    let letter = NewDeadLetter {
        tenant: &pipeline.config.tenant,
        pipeline: &pipeline.config.name,
        source: payload.source(),
        code: error.code,
        message: &error.message,
        payload: payload.raw(),
    };
    tracing::warn!(pipeline = %pipeline.config.name, code = error.code, "payload rejected: {}", error.message);
    match app.metadata.add_dead_letter(letter).await {
        Ok(id) => error.with_dead_letter(Some(id)),
        Err(e) => ApiError::unavailable(
            format!(
                "{}; the payload could not be kept ({e}), retry later",
                error.message
            ),
            1,
        ),
    }
}
