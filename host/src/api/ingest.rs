//! Ingestion routes: `POST /v1/pipelines/{p}/reports`, `GET|POST /v1/webhooks/{p}`.
//!
//! receive → verify (host-held secrets) → [`crate::pipeline::process`] → `202 {"accepted": N}`.
//!
//! Webhooks are public, so anyone can post junk to them: a delivery is
//! charged to the pipeline's ingest budget (per pipeline and per tenant) only
//! once its signature verifies, and a handshake only once its verify token
//! matches (Meta) or its challenge is UUID-shaped (LinkedIn). Junk costs an
//! HMAC over at most `server.max_webhook_body_bytes` and is bounded by the
//! global concurrency limit, never by the tenant's budget.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use subtle::ConstantTimeEq;

use super::error::{body_error, body_error_limited_by, rate_headers};
use super::openapi::{Accepted, CurrencyCode, EntityId, ErrorBody, PlatformPayload};
use super::{draw, tenant_pipeline, ApiError, Caller, Params, PathParam};
use crate::app::{App, Pipeline};
use crate::config::is_currency;
use crate::pipeline::process::{process, Failure, FailureKind, Origin, Overrides, Payload};
use crate::pipeline::signature;
use crate::plugin::{CallError, HandshakePlan, SignatureScheme, WebhookRequest};
use crate::ratelimit::{LimitState, RouteClass};

/// Draw a verified webhook request from its pipeline's ingest budget.
async fn charge(app: &App, pipeline: &Pipeline) -> Result<Option<LimitState>, ApiError> {
    draw(
        app,
        RouteClass::Ingest,
        &format!("webhook:{}", pipeline.config.name),
        &pipeline.config.tenant,
    )
    .await
}

fn with_rate_headers(mut response: Response, state: Option<LimitState>) -> Response {
    if let Some(state) = &state {
        rate_headers(&mut response, state);
    }
    response
}

fn pipeline<'a>(app: &'a App, name: &str) -> Result<&'a Pipeline, ApiError> {
    app.pipelines.get(name).ok_or_else(|| {
        ApiError::not_found("unknown_pipeline", format!("no pipeline named `{name}`"))
    })
}

/// `POST /v1/pipelines/{pipeline}/reports`: a report-API response body as the platform returned it.
#[utoipa::path(post, path = "/v1/pipelines/{pipeline}/reports", tag = "ingestion",
    description = "A report-API response body exactly as the platform returned it. `202` once the rows are durable on the bus; an unparseable body is kept as a dead letter.",
    params(("pipeline" = String, Path, description = "Pipeline name"),
        ("account_id" = Option<EntityId>, Query, description = "Account the rows belong to, when the body does not say"),
        ("currency" = Option<CurrencyCode>, Query, description = "ISO 4217 currency of the rows (any case), when the body does not say")),
    request_body(content = PlatformPayload, content_type = "application/json", description = "The platform's report response, unchanged"),
    responses((status = 202, body = Accepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 500, description = "The adapter plugin failed", body = ErrorBody),
        (status = 503, description = "Bus unavailable; see Retry-After", body = ErrorBody)))]
pub async fn push_report(
    State(app): State<App>,
    PathParam(name): PathParam,
    caller: Caller,
    query: Params,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let pipeline = tenant_pipeline(&app, &caller.0.tenant, &name)?;
    // Undeclared parameters were refused by the guard (`super::params`).
    let Params(query) = query;
    let account_id = query.get("account_id").filter(|a| !a.is_empty()).cloned();
    // Currency codes in any case, kept upper case (as `/v1/insights` takes them).
    let currency = query.get("currency").map(|c| c.to_ascii_uppercase());
    if let Some(c) = &currency {
        if !is_currency(c) {
            return Err(ApiError::invalid_parameter(
                "currency",
                format!("`{c}` is not an ISO 4217 code such as USD"),
            ));
        }
    }
    let body = body.map_err(body_error)?;
    let overrides = Overrides {
        account_id,
        currency,
        options: vec![],
        replay: false,
    };
    accept(
        &app,
        pipeline,
        Origin::Report,
        Payload::Report(body.to_vec()),
        overrides,
    )
    .await
}

/// `GET /v1/webhooks/{pipeline}`: the platform's verification handshake.
#[utoipa::path(get, path = "/v1/webhooks/{pipeline}", tag = "ingestion",
    description = "The platform's subscription handshake (Meta `hub.challenge`, LinkedIn `challengeCode`...).",
    params(("pipeline" = String, Path, description = "Pipeline name")),
    responses((status = 200, description = "The challenge answer", content(
            (String = "text/plain"), (serde_json::Value = "application/json"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 500, description = "The adapter plugin failed", body = ErrorBody),
        (status = 503, description = "The pipeline is quarantined or its plugin busy; see Retry-After", body = ErrorBody)))]
pub async fn webhook_handshake(
    State(app): State<App>,
    PathParam(name): PathParam,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let pipeline = pipeline(&app, &name)?;
    webhooks_supported(pipeline)?;
    let Query(query) = query.map_err(|e| ApiError::invalid_parameter("query", e.body_text()))?;
    let plan = handshake_call(pipeline, query).await?;
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
                let limit = charge(&app, pipeline).await?;
                Ok(with_rate_headers(
                    (
                        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                        echo.challenge,
                    )
                        .into_response(),
                    limit,
                ))
            } else {
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "verify_token_mismatch",
                    "the verify token does not match",
                ))
            }
        }
        HandshakePlan::HmacChallenge(code) => {
            // Whatever the plugin planned, only a UUID-shaped code is signed:
            // answering the HMAC of any text would be a signing oracle.
            if !signature::is_uuid_challenge(&code) {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_handshake",
                    "challengeCode must be a UUID (8-4-4-4-12 hex digits), as LinkedIn sends",
                ));
            }
            let secret = webhook_secret(pipeline)?;
            let limit = charge(&app, pipeline).await?;
            let response = signature::hmac_hex(secret.as_bytes(), code.as_bytes());
            Ok(with_rate_headers(
                Json(json!({"challengeCode": code, "challengeResponse": response})).into_response(),
                limit,
            ))
        }
        HandshakePlan::Reject(reason) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_handshake",
            reason,
        )),
    }
}

/// `POST /v1/webhooks/{pipeline}`: a platform delivery, signature checked by the host.
#[utoipa::path(post, path = "/v1/webhooks/{pipeline}", tag = "ingestion",
    description = "A platform's webhook delivery; its signature is checked with the pipeline's secret before anything else.",
    params(("pipeline" = String, Path, description = "Pipeline name")),
    request_body(content = PlatformPayload, content_type = "application/json", description = "The platform's delivery, unchanged"),
    responses((status = 202, body = Accepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "The delivery names an account the pipeline's `webhook_accounts` does not list (`account_not_allowed`); kept as a dead letter", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 500, description = "The adapter plugin failed", body = ErrorBody),
        (status = 503, description = "Bus unavailable, pipeline quarantined or plugin busy; see Retry-After", body = ErrorBody)))]
pub async fn webhook(
    State(app): State<App>,
    PathParam(name): PathParam,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let pipeline = pipeline(&app, &name)?;
    let scheme = webhooks_supported(pipeline)?;
    let body = body.map_err(|e| body_error_limited_by(e, "server.max_webhook_body_bytes"))?;
    let secret = webhook_secret(pipeline)?;
    let header_value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let verified = match scheme {
        SignatureScheme::HmacSha256(h) => signature::verify_hmac(
            secret.as_bytes(),
            &body,
            signature::HmacCheck {
                header: &h.header,
                header_prefix: &h.header_prefix,
                signed_prefix: &h.signed_prefix,
            },
            header_value(&h.header),
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
    // Only a delivery the platform signed spends the tenant's budget.
    let limit = charge(&app, pipeline).await?;
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
    let response = accept(
        &app,
        pipeline,
        Origin::Webhook,
        Payload::Webhook(request),
        Overrides::default(),
    )
    .await?;
    Ok(with_rate_headers(response, limit))
}

/// The plugin's handshake plan, through the same breaker and call slots as
/// every other call of the pipeline.
async fn handshake_call(
    pipeline: &Pipeline,
    query: Vec<(String, String)>,
) -> Result<HandshakePlan, ApiError> {
    let name = &pipeline.config.name;
    if let Some(unavailable) = pipeline.plugin.unavailable(name) {
        return Err(ApiError {
            retry_after: unavailable.retry_after(),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                unavailable.code(),
                unavailable.message(name),
            )
        });
    }
    let slot = pipeline
        .plugin
        .call_slot()
        .await
        .map_err(super::query::plugin_busy)?;
    let adapter = pipeline.adapter();
    let plan = tokio::task::spawn_blocking(move || adapter.handshake(&query))
        .await
        .map_err(|e| ApiError::internal("handshake task failed", e))?;
    drop(slot);
    match plan {
        Ok(plan) => {
            pipeline.plugin.record(name, false);
            Ok(plan)
        }
        Err(e @ CallError::Busy { .. }) => Err(ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "plugin_busy",
                e.to_string(),
            )
        }),
        Err(e) => {
            pipeline.plugin.record(name, true);
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "plugin_failed",
                e.to_string(),
            ))
        }
    }
}

fn webhooks_supported(pipeline: &Pipeline) -> Result<SignatureScheme, ApiError> {
    match &pipeline.adapter().info().signature {
        SignatureScheme::None => Err(ApiError::not_found(
            "webhooks_not_supported",
            format!(
                "the `{}` platform sends no metric webhooks; push reports instead",
                pipeline.adapter().info().platform
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

/// Run the payload through the pipeline and answer `202 {"accepted": N}` or the failure.
async fn accept(
    app: &App,
    pipeline: &Pipeline,
    origin: Origin,
    payload: Payload,
    overrides: Overrides,
) -> Result<Response, ApiError> {
    match process(app, pipeline, origin, payload, overrides).await {
        Ok(accepted) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "accepted": accepted.rows })),
        )
            .into_response()),
        Err(failure) => Err(failure_response(failure)),
    }
}

/// The HTTP form of a processing failure.
pub fn failure_response(failure: Failure) -> ApiError {
    let status = match failure.kind {
        FailureKind::Client => StatusCode::BAD_REQUEST,
        FailureKind::Forbidden => StatusCode::FORBIDDEN,
        FailureKind::Plugin => StatusCode::INTERNAL_SERVER_ERROR,
        FailureKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    };
    let retry_after = failure.retry_after;
    let mut error = ApiError::new(status, failure.code, failure.message);
    error.dead_letter_id = failure.dead_letter_id;
    if status == StatusCode::SERVICE_UNAVAILABLE {
        error.retry_after = Some(retry_after.unwrap_or(1));
    }
    error
}
