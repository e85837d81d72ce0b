//! The REST API (axum), routes and JSON per DESIGN.md §4.
//!
//! - [`ingest`]: report pushes and platform webhooks.
//! - [`query`]: insights and campaigns.
//! - [`ops`]: health, readiness, pipelines, plugins, dead letters.
//!
//! Every error is `{"error": {"code", "message"}}`; every route but health
//! and webhooks (which check platform signatures) needs a bearer JWT.

pub mod error;
pub mod ingest;
pub mod ops;
pub mod query;

use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::Router;

use crate::app::App;
use crate::auth::{AuthError, Claims, Role};
pub use error::ApiError;

/// The whole router.
pub fn router(app: App) -> Router {
    let max_body = app.config.server.max_body_bytes;
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route(
            "/v1/pipelines/{pipeline}/reports",
            post(ingest::push_report),
        )
        .route(
            "/v1/webhooks/{pipeline}",
            get(ingest::webhook_handshake).post(ingest::webhook),
        )
        .route("/v1/insights", get(query::insights))
        .route("/v1/campaigns", get(query::campaigns))
        .route("/v1/pipelines", get(ops::pipelines))
        .route("/v1/pipelines/{pipeline}/pull", post(ops::pull_now))
        .route("/v1/pipelines/{pipeline}/pulls", get(ops::pull_runs))
        .route("/v1/plugins", get(ops::plugins))
        .route("/v1/plugins/{name}/reload", post(ops::reload_plugin))
        .route("/v1/dead-letters", get(ops::dead_letters))
        .route("/v1/dead-letters/{id}/retry", post(ops::retry_dead_letter))
        .fallback(ops::not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(app)
}

/// An authenticated caller.
pub struct Caller(pub Claims);

impl Caller {
    /// 403 unless the caller holds a role granting `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.0.has(role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(role))
        }
    }
}

impl FromRequestParts<App> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::unauthorized(AuthError::Missing))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(ApiError::unauthorized(AuthError::Missing))?;
        app.keys
            .verify(token.trim())
            .map(Caller)
            .map_err(ApiError::unauthorized)
    }
}
