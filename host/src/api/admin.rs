//! Caller and administration routes: `GET /v1/whoami`, API keys
//! (`GET|POST /v1/keys`, `DELETE /v1/keys/{id}`) and the audit log
//! (`GET /v1/audit`), all within the caller's tenant.

use std::collections::HashMap;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::openapi::{AuditAnswer, ErrorBody, KeyList, NewKeyAnswer, WhoAmI};
use super::{ApiError, Caller};
use crate::app::App;
use crate::auth::Role;

/// `GET /v1/whoami`: the caller as adpipe sees it.
#[utoipa::path(get, path = "/v1/whoami", tag = "auth",
    description = "The authenticated caller: subject, tenant, roles and credential kind.",
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn whoami(caller: Caller) -> Response {
    let claims = &caller.0;
    let kind = if claims.sub.starts_with("key:") {
        "api_key"
    } else {
        "jwt"
    };
    Json(json!({
        "sub": claims.sub, "tenant": claims.tenant, "roles": claims.roles, "credential": kind,
    }))
    .into_response()
}

/// Body of `POST /v1/keys`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// What the key is for (shown in listings): 1 to 100 characters, not all blank.
    #[schema(min_length = 1, max_length = 100, pattern = "\\S")]
    pub name: String,
    /// Roles the key holds (at least one; `operator` keys are made on the host).
    #[schema(value_type = Vec<super::openapi::KeyRole>, min_items = 1)]
    pub roles: Vec<String>,
}

/// `POST /v1/keys` (admin): make an API key of the caller's tenant; the key is shown once.
#[utoipa::path(post, path = "/v1/keys", tag = "admin", request_body = NewKey,
    responses((status = 201, body = NewKeyAnswer), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn create_key(
    State(app): State<App>,
    caller: Caller,
    body: Result<Json<NewKey>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::invalid_parameter("body", e.body_text()))?;
    let name = body.name.trim();
    if name.is_empty() || body.name.chars().count() > 100 {
        return Err(ApiError::invalid_parameter(
            "name",
            "must be 1 to 100 characters",
        ));
    }
    let mut roles = Vec::new();
    for r in &body.roles {
        let role = Role::parse(r).ok_or_else(|| {
            ApiError::invalid_parameter(
                "roles",
                format!("`{r}` is not a role (viewer, analyst, ingest, admin)"),
            )
        })?;
        if role == Role::Operator {
            // A tenant's admin cannot hand out the deployment's role.
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "`operator` keys are made on the host (`adpipe keys create --role operator`), not by a tenant's admin",
            ));
        }
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    if roles.is_empty() {
        return Err(ApiError::invalid_parameter(
            "roles",
            "must name at least one role",
        ));
    }
    let made = crate::auth::apikeys::generate(&caller.0.tenant, name, &roles);
    app.metadata
        .add_api_key(&made.record)
        .await
        .map_err(|e| ApiError::internal("storing the key", e))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"key": made.key, "api_key": made.record})),
    )
        .into_response())
}

/// `GET /v1/keys` (admin): the tenant's keys (never their secrets).
#[utoipa::path(get, path = "/v1/keys", tag = "admin",
    responses((status = 200, body = KeyList), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn list_keys(State(app): State<App>, caller: Caller) -> Result<Response, ApiError> {
    let keys = app
        .metadata
        .api_keys(&caller.0.tenant)
        .await
        .map_err(|e| ApiError::internal("reading keys", e))?;
    Ok(Json(json!({ "api_keys": keys })).into_response())
}

/// `DELETE /v1/keys/{id}` (admin): revoke a key at once.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "admin",
    params(("id" = String, Path, description = "Key id (the 12 hex digits after `adp_`)")),
    responses((status = 200, description = "Revoked", body = serde_json::Value), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn revoke_key(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let revoked = app
        .metadata
        .revoke_api_key(&caller.0.tenant, &id)
        .await
        .map_err(|e| ApiError::internal("revoking the key", e))?;
    if !revoked {
        return Err(ApiError::not_found(
            "unknown_key",
            format!("no live key `{id}`"),
        ));
    }
    Ok(Json(json!({"id": id, "revoked": true})).into_response())
}

/// `GET /v1/audit` (admin): the tenant's newest admin actions.
#[utoipa::path(get, path = "/v1/audit", tag = "admin",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "At most this many entries (1 to 1000, default 100)")),
    responses((status = 200, body = AuditAnswer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn audit_log(
    State(app): State<App>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let limit = super::ops::limit_param(&query)?;
    let entries = app
        .metadata
        .audit_log(&caller.0.tenant, limit)
        .await
        .map_err(|e| ApiError::internal("reading the audit log", e))?;
    Ok(Json(json!({ "entries": entries })).into_response())
}
