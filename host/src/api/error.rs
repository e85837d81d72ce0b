//! The API's error type and its JSON form `{"error": {"code", "message"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::auth::{AuthError, Role};
use crate::ratelimit::LimitState;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Id of the dead letter keeping the payload, when one was kept.
    pub dead_letter_id: Option<String>,
    pub retry_after: Option<u64>,
    /// Budget state for `RateLimit-*` headers (on a `429`).
    pub rate_limit: Option<Box<LimitState>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            dead_letter_id: None,
            retry_after: None,
            rate_limit: None,
        }
    }
    pub fn invalid_parameter(name: &str, message: impl std::fmt::Display) -> ApiError {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            format!("`{name}`: {message}"),
        )
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn unauthorized(e: AuthError) -> ApiError {
        let code = match e {
            AuthError::Missing => "missing_token",
            AuthError::Expired => "token_expired",
            AuthError::Invalid(_) => "invalid_token",
            AuthError::InvalidKey(_) => "invalid_api_key",
        };
        Self::new(StatusCode::UNAUTHORIZED, code, e.to_string())
    }
    pub fn forbidden(role: Role) -> ApiError {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this route needs the `{}` role",
                serde_json::to_value(role)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            ),
        )
    }
    pub fn internal(context: &str, error: impl std::fmt::Display) -> ApiError {
        tracing::error!("{context}: {error}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{context}; see the server log"),
        )
    }
    pub fn unavailable(message: impl Into<String>, retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }
    pub fn rate_limited(scope: &str, retry_after: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests for this {scope}; retry in {retry_after} s"),
            )
        }
    }
    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = code;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(id) = &self.dead_letter_id {
            error["dead_letter_id"] = json!(id);
        }
        let mut response = (self.status, Json(json!({ "error": error }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge(self.code));
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(state) = &self.rate_limit {
            rate_headers(&mut response, state);
        }
        response
    }
}

/// The `WWW-Authenticate` challenge of a `401` (RFC 9110 §11.6.1): bearer
/// credentials (RFC 6750, `error="invalid_token"` when one was presented),
/// or the platform's signature on webhook deliveries.
fn challenge(code: &str) -> HeaderValue {
    HeaderValue::from_static(match code {
        "missing_token" => "Bearer realm=\"adpipe\"",
        "invalid_signature" | "signature_unverifiable" => "Signature realm=\"adpipe-webhooks\"",
        _ => "Bearer realm=\"adpipe\", error=\"invalid_token\"",
    })
}

/// `RateLimit-Limit`, `-Remaining`, `-Reset` and `-Policy` of a budget.
pub fn rate_headers(response: &mut Response, state: &LimitState) {
    let headers = response.headers_mut();
    headers.insert("ratelimit-limit", HeaderValue::from(state.limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(state.remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(state.reset_secs));
    if let Ok(policy) = HeaderValue::from_str(&state.policy) {
        headers.insert("ratelimit-policy", policy);
    }
}

/// Map a body-reading failure (413 beyond the limit) to an error answer.
pub fn body_error(rejection: axum::extract::rejection::BytesRejection) -> ApiError {
    body_error_limited_by(rejection, "server.max_body_bytes")
}

/// [`body_error`] naming the setting that limits the route's bodies.
pub fn body_error_limited_by(
    rejection: axum::extract::rejection::BytesRejection,
    setting: &str,
) -> ApiError {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            status,
            "payload_too_large",
            format!("the request body exceeds the configured {setting}"),
        )
    } else {
        ApiError::new(status, "unreadable_body", rejection.body_text())
    }
}
