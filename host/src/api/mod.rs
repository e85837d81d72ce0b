//! The REST API (axum), routes and JSON per docs/contracts.md §4.
//!
//! - [`ingest`]: report pushes and platform webhooks.
//! - [`query`]: insights, campaigns and the metric catalog.
//! - [`params`], [`paging`]: query parameters held to the document; keyset pages.
//! - [`ops`]: health, readiness, metrics, pipelines, plugins, dead letters.
//! - [`rollout`]: deploying plugin versions to the fleet, canaries, rollback.
//! - [`admin`]: API keys, the audit log, `whoami`.
//! - [`openapi`]: the OpenAPI document, generated from the handlers.
//! - [`dashboard`]: the built-in page and its static files.
//!
//! Each route is declared once, in [`API`]: its handler (whose
//! `#[utoipa::path]` gives the method, the path and the OpenAPI operation),
//! its access (public, webhook signature, any authenticated caller, or a
//! role) and its rate-limit class. The router, the guard's table
//! ([`ROUTES`]) and the OpenAPI document (including each operation's
//! security requirement) are all built from it. One middleware ([`guard`])
//! enforces access for every route, so no handler checks roles itself. `HEAD`
//! is guarded as the `GET` it mirrors; a method a route does not accept is
//! `405 method_not_allowed` with `Allow`. Webhooks are the one exception to
//! charging in the guard: their handlers check the platform's signature first
//! and only then draw from the pipeline's ingest budget ([`draw`]), so
//! unsigned junk cannot spend a tenant's budget.
//!
//! Around every route: a global concurrency limit (`503 overloaded` beyond
//! `server.max_concurrent_requests`), the request time limit, body limits
//! (`server.max_body_bytes`; webhooks `server.max_webhook_body_bytes`).
//! Every error is `{"error": {"code", "message"}}`.

pub mod admin;
pub mod dashboard;
pub mod error;
pub mod ingest;
pub mod openapi;
pub mod ops;
pub mod paging;
pub mod params;
pub mod query;
pub mod rollout;

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::security::SecurityRequirement;
use utoipa::openapi::{RefOr, Schema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use crate::app::App;
use crate::auth::{AuthError, Claims, Role};
use crate::config::ServeRun;
use crate::ratelimit::{LimitState, RouteClass, Verdict};
use crate::telemetry::trace;
use error::rate_headers;
pub use error::ApiError;
pub use params::{Params, QueryParam};

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No credentials (health).
    Public,
    /// Platform webhooks: the handler checks the platform's signature, then
    /// draws from the route class's budget (see [`draw`]).
    Webhook,
    /// Any valid token or API key.
    Authenticated,
    /// A token or key holding a role that grants this one.
    Role(Role),
}

impl Access {
    /// Whether the guard asks for a token or API key.
    pub fn needs_credentials(self) -> bool {
        matches!(self, Access::Authenticated | Access::Role(_))
    }
}

/// One route, declared once in [`API`]: its handler, whose
/// `#[utoipa::path]` attribute gives the method, the path and the OpenAPI
/// operation, who may call it, and the budget it draws from. The router,
/// the guard's table ([`ROUTES`]) and the OpenAPI document are all built
/// from these declarations.
struct Route {
    /// The handler, mounted and documented (`utoipa_axum::routes!`).
    handler: fn() -> UtoipaMethodRouter<App>,
    access: Access,
    /// Budget drawn from; `None` = not limited.
    class: Option<RouteClass>,
    /// Which processes serve it (`server.run`).
    served_by: ServedBy,
}

/// Which processes serve a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServedBy {
    /// Processes that run the API (`server.run` = `all` or `api`).
    Api,
    /// Every process, consumers too (health, readiness, metrics).
    Every,
}

impl ServedBy {
    fn includes(self, run: ServeRun) -> bool {
        self == ServedBy::Every || run != ServeRun::Consumer
    }
}

/// `route!(module::handler, access, class[, served_by])`: one [`Route`],
/// served by API processes unless said otherwise.
macro_rules! route {
    ($module:ident :: $handler:ident, $access:expr, $class:expr) => {
        route!($module::$handler, $access, $class, ServedBy::Api)
    };
    ($module:ident :: $handler:ident, $access:expr, $class:expr, $served_by:expr) => {
        Route {
            handler: || routes!($module::$handler),
            access: $access,
            class: $class,
            served_by: $served_by,
        }
    };
}

use Access::{Authenticated, Public, Webhook};
const READ: Option<RouteClass> = Some(RouteClass::Read);
const INGEST: Option<RouteClass> = Some(RouteClass::Ingest);
const ADMIN: Option<RouteClass> = Some(RouteClass::Admin);
const fn role(r: Role) -> Access {
    Access::Role(r)
}

/// Every route: handler (method and path come from its `#[utoipa::path]`),
/// access, rate-limit class.
const API: &[Route] = &[
    route!(ops::healthz, Public, None, ServedBy::Every),
    route!(ops::readyz, Public, None, ServedBy::Every),
    route!(ops::metrics, role(Role::Operator), ADMIN, ServedBy::Every),
    route!(openapi::document, Public, None),
    route!(dashboard::page, Public, None),
    route!(dashboard::asset, Public, None),
    route!(admin::whoami, Authenticated, READ),
    route!(ingest::push_report, role(Role::Ingest), INGEST),
    route!(ingest::webhook_handshake, Webhook, INGEST),
    route!(ingest::webhook, Webhook, INGEST),
    route!(query::insights, role(Role::Viewer), READ),
    route!(query::campaigns, role(Role::Viewer), READ),
    route!(query::metrics, role(Role::Viewer), READ),
    route!(ops::dead_letters, role(Role::Analyst), READ),
    route!(ops::dead_letter, role(Role::Analyst), READ),
    route!(ops::retry_dead_letter, role(Role::Admin), ADMIN),
    route!(ops::pipelines, role(Role::Admin), ADMIN),
    route!(ops::pull_now, role(Role::Admin), ADMIN),
    route!(ops::pull_runs, role(Role::Admin), ADMIN),
    route!(ops::plugins, role(Role::Operator), ADMIN),
    route!(ops::reload_plugin, role(Role::Operator), ADMIN),
    route!(rollout::deploy, role(Role::Operator), ADMIN),
    route!(rollout::promote, role(Role::Operator), ADMIN),
    route!(rollout::rollback, role(Role::Operator), ADMIN),
    route!(admin::list_keys, role(Role::Admin), ADMIN),
    route!(admin::create_key, role(Role::Admin), ADMIN),
    route!(admin::revoke_key, role(Role::Admin), ADMIN),
    route!(admin::audit_log, role(Role::Admin), ADMIN),
    route!(ops::replay, role(Role::Admin), ADMIN),
];

/// One mounted route as the guard enforces it: a method and path of an
/// [`API`] declaration, with its access and rate-limit class.
#[derive(Clone, Copy, Debug)]
pub struct RouteSpec {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    /// Budget drawn from; `None` = not limited.
    pub class: Option<RouteClass>,
    /// The query parameters its operation declares: the only ones accepted
    /// (webhooks excepted, see [`params`]).
    pub query: &'static [QueryParam],
}

/// Every mounted route, derived from [`API`] once.
pub static ROUTES: LazyLock<Vec<RouteSpec>> =
    LazyLock::new(|| API.iter().flat_map(Route::specs).collect());

impl Route {
    /// The method and path of each operation the handler documents (one
    /// for every handler here); the strings live as long as [`ROUTES`].
    fn specs(&self) -> Vec<RouteSpec> {
        let (_, paths, _) = (self.handler)();
        let mut specs = Vec::new();
        for (path, item) in paths.paths {
            let path: &'static str = path.leak();
            for (method, operation) in operations(&item) {
                let query: Vec<QueryParam> = operation
                    .parameters
                    .iter()
                    .flatten()
                    .filter_map(|p| match p {
                        RefOr::T(p) => Some(p),
                        RefOr::Ref(_) => None,
                    })
                    .filter(|p| p.parameter_in == ParameterIn::Query)
                    .map(|p| QueryParam {
                        name: p.name.clone().leak(),
                        list: matches!(p.schema, Some(RefOr::T(Schema::Array(_)))),
                    })
                    .collect();
                specs.push(RouteSpec {
                    method,
                    path,
                    access: self.access,
                    class: self.class,
                    query: query.leak(),
                });
            }
        }
        specs
    }

    /// The handler, mounted and documented: the webhook body limit on
    /// webhooks, the security schemes on routes needing credentials.
    fn mount(&self, max_webhook_body: usize) -> UtoipaMethodRouter<App> {
        let (schemas, mut paths, mut method_router) = (self.handler)();
        if self.access == Access::Webhook {
            method_router = method_router.layer(DefaultBodyLimit::max(max_webhook_body));
        }
        if self.access.needs_credentials() {
            for item in paths.paths.values_mut() {
                for operation in operations_mut(item) {
                    operation.security = Some(vec![
                        SecurityRequirement::new("bearer", Vec::<String>::new()),
                        SecurityRequirement::new("api_key", Vec::<String>::new()),
                    ]);
                }
            }
        }
        (schemas, paths, method_router)
    }
}

/// The operations of a path item by method: every method `routes!`
/// mounts, so none can escape the guard's table.
fn operations(item: &PathItem) -> Vec<(&'static str, &Operation)> {
    let PathItem {
        get,
        put,
        post,
        delete,
        options,
        head,
        patch,
        trace,
        ..
    } = item;
    [
        ("GET", get),
        ("PUT", put),
        ("POST", post),
        ("DELETE", delete),
        ("OPTIONS", options),
        ("HEAD", head),
        ("PATCH", patch),
        ("TRACE", trace),
    ]
    .into_iter()
    .filter_map(|(method, operation)| Some((method, operation.as_ref()?)))
    .collect()
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// The spec of a matched route; `HEAD` is the `GET` it mirrors (axum answers
/// it with the `GET` handler), so it is guarded and limited alike.
pub fn spec(method: &Method, path: &str) -> Option<&'static RouteSpec> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    ROUTES.iter().find(|r| r.path == path && r.method == method)
}

/// The handlers, mounted and documented together.
pub fn documented_routes() -> OpenApiRouter<App> {
    documented_routes_with(
        crate::config::ServerConfig::default().max_webhook_body_bytes,
        ServeRun::All,
    )
}

/// [`documented_routes`] with the webhook routes' own body limit, of the
/// routes a `run` process serves.
fn documented_routes_with(max_webhook_body: usize, run: ServeRun) -> OpenApiRouter<App> {
    API.iter()
        .filter(|route| route.served_by.includes(run))
        .fold(
            OpenApiRouter::with_openapi(openapi::base()),
            |router, route| router.routes(route.mount(max_webhook_body)),
        )
}

/// The whole router.
pub fn router(app: App) -> Router {
    let max_body = app.config.server.max_body_bytes;
    let timeout = Duration::from_millis(app.config.server.request_timeout_ms);
    let (routes, document) = documented_routes_with(
        app.config.server.max_webhook_body_bytes,
        app.config.server.run,
    )
    .split_for_parts();
    let document = openapi::Document(openapi::finish(&document, &app.config).into());
    let request_id = HeaderName::from_static("x-request-id");
    let mut router = routes
        .fallback(ops::not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(middleware::from_fn_with_state(app.clone(), guard))
        .layer(axum::Extension(document))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(timeout, time_limit))
        // tower's limit + load shedding rather than a hand-made counter: one
        // semaphore shared by every route (`Global…`: axum layers each route
        // separately), and a full semaphore refuses at once instead of queueing.
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(overloaded))
                .layer(LoadShedLayer::new())
                .layer(GlobalConcurrencyLimitLayer::new(
                    app.config.server.max_concurrent_requests,
                )),
        )
        .layer(middleware::from_fn_with_state(
            app.config.server.tls.is_some(),
            security_headers,
        ))
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    // The server span of the request's trace (see
                    // crate::telemetry::trace): named by its route once routed
                    // ([`guard`]), a child of the caller's `traceparent`.
                    let span = tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        request_id = %id,
                        otel.kind = "server",
                        otel.status_code = tracing::field::Empty,
                        http.route = tracing::field::Empty,
                        http.response.status_code = tracing::field::Empty,
                    );
                    let caller = request
                        .headers()
                        .get(trace::TRACEPARENT)
                        .and_then(|v| v.to_str().ok());
                    trace::continue_caller(&span, caller);
                    span
                })
                .on_request(())
                .on_response(
                    tower_http::trace::DefaultOnResponse::new().level(tracing::Level::DEBUG),
                ),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid));
    if !app.config.server.cors_allowed_origins.is_empty() {
        let origins: Vec<HeaderValue> = app
            .config
            .server
            .cors_allowed_origins
            .iter()
            .map(|o| o.header_value().clone())
            .collect();
        router = router.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST, Method::DELETE])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    header::IF_NONE_MATCH,
                    HeaderName::from_static("x-api-key"),
                ])
                .expose_headers([
                    header::ETAG,
                    header::RETRY_AFTER,
                    HeaderName::from_static("x-request-id"),
                    HeaderName::from_static("ratelimit-limit"),
                    HeaderName::from_static("ratelimit-remaining"),
                    HeaderName::from_static("ratelimit-reset"),
                ])
                .max_age(Duration::from_secs(600)),
        );
    }
    router.with_state(app)
}

/// An authenticated caller, put in the request by [`guard`].
#[derive(Clone, Debug)]
pub struct Caller(pub Claims);

impl<S: Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(ApiError::unauthorized(AuthError::Missing))
    }
}

/// The pipeline `name` of `tenant`; another tenant's pipeline is
/// indistinguishable from a missing one (`404 unknown_pipeline`).
pub fn tenant_pipeline<'a>(
    app: &'a App,
    tenant: &str,
    name: &str,
) -> Result<&'a crate::app::Pipeline, ApiError> {
    app.pipelines
        .get(name)
        .filter(|p| p.config.tenant == tenant)
        .ok_or_else(|| {
            ApiError::not_found("unknown_pipeline", format!("no pipeline named `{name}`"))
        })
}

/// The one path parameter of a route; undecodable is `400 invalid_parameter`.
pub struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(p)| PathParam(p))
            .map_err(|e| ApiError::invalid_parameter("path", e.body_text()))
    }
}

/// The credential a request presents: `Authorization: Bearer …` or `X-API-Key`.
fn credential(parts: &Parts) -> Option<&str> {
    if let Some(key) = parts.headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(key.trim());
    }
    let header = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())?;
    let (scheme, value) = header.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(value.trim())
}

/// Who is calling: a JWT or an API key, verified.
async fn authenticate(app: &App, parts: &Parts) -> Result<Claims, ApiError> {
    let credential = credential(parts).ok_or(ApiError::unauthorized(AuthError::Missing))?;
    if crate::auth::apikeys::looks_like_key(credential) {
        crate::auth::apikeys::verify(&app.metadata, credential)
            .await
            .map_err(ApiError::unauthorized)
    } else {
        app.keys.verify(credential).map_err(ApiError::unauthorized)
    }
}

/// Draw one request from `class`'s budgets of `caller` and `tenant`: the
/// state for the answer's `RateLimit-*` headers (`None` when limits are
/// off), or the `429` answer.
pub async fn draw(
    app: &App,
    class: RouteClass,
    caller: &str,
    tenant: &str,
) -> Result<Option<LimitState>, ApiError> {
    match app.rate_limits.check(class, caller, tenant).await {
        None => Ok(None),
        Some(Verdict::Allowed(state)) => Ok(Some(state)),
        Some(Verdict::Limited {
            state,
            retry_after_secs,
            scope,
        }) => {
            app.telemetry.limited(class.as_str(), scope);
            let mut error = ApiError::rate_limited(scope, retry_after_secs);
            error.rate_limit = Some(Box::new(state));
            Err(error)
        }
    }
}

/// Enforce [`ROUTES`]: authenticate, authorize, rate-limit, audit admin
/// actions, count and time the request.
pub async fn guard(
    State(app): State<App>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route_path = matched.as_ref().map(|m| m.as_str()).unwrap_or("unmatched");
    let spec = spec(&method, route_path);
    let route_label = route_path.to_owned();
    let span = tracing::Span::current();
    trace::rename(&span, || format!("{method} {route_path}"));
    span.record("http.route", route_path);
    let response = match spec {
        None => next.run(request).await,
        Some(spec) => guarded(&app, spec, request, next).await,
    };
    span.record("http.response.status_code", response.status().as_u16());
    if response.status().is_server_error() {
        span.record("otel.status_code", "error");
    }
    app.telemetry.observe_request(
        &route_label,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn guarded(app: &App, spec: &RouteSpec, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    if spec.access != Access::Webhook {
        match params::check(spec.query, &parts.uri) {
            // The handler's `Params` takes the pairs read here: one parse.
            Ok(pairs) => {
                parts.extensions.insert(pairs);
            }
            Err(refusal) => return refusal.into_response(),
        }
    }
    let claims = match spec.access {
        // Webhook handlers verify the delivery first and only then draw from
        // the pipeline's budget: unsigned junk must not spend it.
        Access::Public | Access::Webhook => {
            return next.run(Request::from_parts(parts, body)).await
        }
        Access::Authenticated | Access::Role(_) => match authenticate(app, &parts).await {
            Ok(claims) => claims,
            Err(e) => return e.into_response(),
        },
    };
    if let Access::Role(required) = spec.access {
        if !claims.has(required) {
            return ApiError::forbidden(required).into_response();
        }
    }
    let mut limit_state = None;
    if let Some(class) = spec.class {
        match draw(app, class, &claims.sub, &claims.tenant).await {
            Ok(state) => limit_state = state,
            Err(refusal) => return refusal.into_response(),
        }
    }
    let audit =
        matches!(spec.access, Access::Role(Role::Admin | Role::Operator)) && spec.method != "GET";
    let target = parts.uri.path().to_owned();
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    parts.extensions.insert(Caller(claims.clone()));
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if let Some(state) = &limit_state {
        rate_headers(&mut response, state);
    }
    if audit {
        // What the handler adds about the action (e.g. the content hash deployed).
        let target = match response.extensions().get::<AuditDetail>() {
            Some(AuditDetail(detail)) => format!("{target} {detail}"),
            None => target,
        };
        let entry = crate::metadata::AuditEntry {
            id: uuid::Uuid::new_v4().to_string(),
            at_ms: chrono::Utc::now().timestamp_millis(),
            tenant: claims.tenant.clone(),
            actor: claims.sub.clone(),
            action: format!("{} {}", spec.method, spec.path),
            target,
            status: i64::from(response.status().as_u16()),
            request_id,
        };
        if let Err(e) = app.metadata.audit(&entry).await {
            tracing::error!(action = %entry.action, "writing the audit log failed: {e}");
        }
    }
    response
}

/// Detail an admin handler attaches to its response for the audit log's
/// `target` (after the path): what exactly was done.
#[derive(Clone, Debug)]
pub struct AuditDetail(pub String);

/// A method the route does not accept (axum adds `Allow`).
async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("this route does not accept {method}; the Allow header lists the methods it does"),
    )
}

/// `503 overloaded` when `server.max_concurrent_requests` are being served.
async fn overloaded(error: tower::BoxError) -> ApiError {
    if error.is::<tower::load_shed::error::Overloaded>() {
        ApiError::unavailable(
            "the server is serving as many requests as it may at once (server.max_concurrent_requests); retry shortly",
            1,
        )
        .with_code("overloaded")
    } else {
        ApiError::internal("serving the request failed", error)
    }
}

/// Answer `503 timeout` when a request runs longer than `server.request_timeout_ms`.
async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::unavailable(
            format!(
                "the request took longer than {} ms (server.request_timeout_ms)",
                limit.as_millis()
            ),
            1,
        )
        .with_code("timeout")
        .into_response(),
    }
}

/// Headers every answer carries.
async fn security_headers(State(tls): State<bool>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    // JSON answers load nothing; the dashboard's page sets its own policy.
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if tls {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    //! One declaration per route: the guard's table, the OpenAPI document
    //! and the router must hold the same routes, each derived from [`API`].

    use std::collections::BTreeSet;

    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;

    /// Methods sent to every declared path.
    const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

    fn guarded() -> BTreeSet<(String, String)> {
        ROUTES
            .iter()
            .map(|r| (r.method.to_owned(), r.path.to_owned()))
            .collect()
    }

    #[test]
    fn every_declaration_is_one_route_and_none_repeats() {
        assert_eq!(ROUTES.len(), API.len(), "one method and path per handler");
        assert_eq!(guarded().len(), ROUTES.len(), "no route declared twice");
    }

    #[test]
    fn the_document_lists_exactly_the_guarded_routes_with_their_security() {
        let doc: serde_json::Value = serde_json::from_str(openapi::json()).expect("JSON");
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            let item = item.as_object().expect("path item");
            let operations = item.iter().filter(|(key, _)| {
                [
                    "get", "put", "post", "delete", "options", "head", "patch", "trace",
                ]
                .contains(&key.as_str())
            });
            for (method, operation) in operations {
                let method = method.to_ascii_uppercase();
                let spec = ROUTES
                    .iter()
                    .find(|r| r.method == method && r.path == path)
                    .unwrap_or_else(|| panic!("{method} {path} is documented, not guarded"));
                let schemes: Vec<String> = operation["security"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_object()?.keys().next().cloned())
                    .collect();
                let expected: &[&str] = if spec.access.needs_credentials() {
                    &["bearer", "api_key"]
                } else {
                    &[]
                };
                assert_eq!(schemes, expected, "{method} {path}");
                documented.insert((method, path.clone()));
            }
        }
        assert_eq!(documented, guarded());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_router_mounts_exactly_the_guarded_routes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = crate::config::Config::default();
        config.server.data_dir = dir.path().to_path_buf();
        config.server.watch_plugins = false;
        config.auth.jwt_secret = Some("unit-test-secret-unit-test-secret".into());
        let app = App::start(config).await.expect("start");
        let paths: BTreeSet<&str> = ROUTES.iter().map(|r| r.path).collect();
        for path in paths {
            let uri = path.replace('{', "x-").replace('}', "");
            for method in METHODS {
                let request = axum::http::Request::builder()
                    .method(method)
                    .uri(&uri)
                    .body(Body::empty())
                    .expect("request");
                let response = router(app.clone()).oneshot(request).await.expect("answer");
                let status = response.status();
                let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .expect("body");
                let code = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["error"]["code"].as_str().map(String::from));
                match ROUTES.iter().find(|r| r.path == path && r.method == method) {
                    None => assert_eq!(
                        status,
                        StatusCode::METHOD_NOT_ALLOWED,
                        "{method} {path} is mounted but not declared"
                    ),
                    Some(spec) if spec.access.needs_credentials() => assert_eq!(
                        (status, code.as_deref()),
                        (StatusCode::UNAUTHORIZED, Some("missing_token")),
                        "{method} {path} is guarded"
                    ),
                    Some(_) => assert!(
                        status != StatusCode::METHOD_NOT_ALLOWED
                            && code.as_deref() != Some("not_found"),
                        "{method} {path} is declared but not mounted: {status}"
                    ),
                }
            }
        }
    }
}
