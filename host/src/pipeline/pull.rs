//! Scheduled pulls: the plugin plans HTTP requests and parses the bodies; the
//! host performs them.
//!
//! - Only hosts on the plugin's allow-list (plus the configured `base_url`'s)
//!   are contacted, over HTTPS unless the base URL says otherwise.
//! - Credentials come from the environment and are injected where the plugin's
//!   `credential-slot` says; the plugin never sees them, and neither do logs.
//! - 429 and 5xx (and transport errors) are retried with exponential backoff,
//!   honouring `Retry-After`.
//! - Pagination follows each parsed page's `next-page`; the window is the
//!   lookback (restated days come back and replace older snapshots).
//! - Every run is recorded in metadata (status, pages, rows, retries, error).

use std::time::Duration;

use chrono::{Days, NaiveDate, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};

use crate::app::{App, Pipeline};
use crate::metadata::PullRun;
use crate::pipeline::process::{process, Origin, Overrides, Payload};
use crate::plugin::{CallError, CredentialSlot, Date, HttpRequest, PullRequest};

/// Attempts per request (the first try plus retries).
const ATTEMPTS: u32 = 5;
/// First backoff; doubles per retry.
const BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait honoured from `Retry-After`.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Most redirects followed per request (each one allow-listed).
const MAX_REDIRECTS: usize = 5;
/// Most bytes of an error response read for the run's error message.
const SNIPPET_BYTES: usize = 4096;

/// A pull failed.
#[derive(Debug, thiserror::Error)]
enum PullError {
    #[error("the pipeline has no [pipelines.pull] section")]
    NotConfigured,
    #[error("planning failed: {0}")]
    Plan(String),
    #[error("`{0}` is not on the plugin's allow-list")]
    HostNotAllowed(String),
    #[error("invalid request URL `{0}`")]
    BadUrl(String),
    #[error("{0}")]
    Sunset(String),
    #[error("{0}")]
    Http(String),
    #[error("the platform answered {status}: {snippet}")]
    Status { status: StatusCode, snippet: String },
    #[error("the credential variable {0} is not set")]
    MissingCredential(String),
    #[error("more than {0} pages; stopped (raise pull.max_pages)")]
    TooManyPages(u32),
    #[error("page rejected: {0}")]
    Rejected(String),
    #[error("response body over {0} bytes (pull.max_response_bytes); the page was not ingested")]
    TooLarge(u64),
    #[error("redirect to `{0}` not followed: it is not on the plugin's allow-list")]
    RedirectNotAllowed(String),
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
}

/// Pull every configured account of `pipeline` now; one run per account.
pub async fn pull_pipeline(app: &App, pipeline: &Pipeline) -> Vec<PullRun> {
    let Some(config) = &pipeline.config.pull else {
        return vec![];
    };
    // "Today" in the ad account's reporting time zone, where its days end.
    let today = Utc::now()
        .with_timezone(&pipeline.config.timezone)
        .date_naive();
    let mut runs = Vec::new();
    for account in &config.accounts {
        let run = pull_account(app, pipeline, account, today).await;
        app.telemetry.pull_run(&pipeline.config.name, &run.status);
        if let Err(e) = app
            .metadata
            .add_pull_run(&pipeline.config.tenant, &run)
            .await
        {
            tracing::error!(pipeline = %pipeline.config.name, "recording the pull run failed: {e}");
        }
        runs.push(run);
    }
    runs
}

/// Start the schedules of every pipeline with `pull.every`.
pub fn spawn_schedules(app: &App) {
    for pipeline in app.pipelines.values() {
        let Some(every) = pipeline.config.pull.as_ref().and_then(|p| p.every) else {
            continue;
        };
        let (app, pipeline) = (app.clone(), pipeline.clone());
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                for run in pull_pipeline(&app, &pipeline).await {
                    tracing::info!(
                        pipeline = %run.pipeline, account = %run.account, status = %run.status,
                        pages = run.pages, rows = run.rows, retries = run.retries, "scheduled pull"
                    );
                }
            }
        });
    }
}

fn wit_date(d: NaiveDate) -> Date {
    use chrono::Datelike;
    Date {
        year: d.year() as u16,
        month: d.month() as u8,
        day: d.day() as u8,
    }
}

async fn pull_account(app: &App, pipeline: &Pipeline, account: &str, today: NaiveDate) -> PullRun {
    let lookback = pipeline
        .config
        .pull
        .as_ref()
        .and_then(|p| p.lookback_days)
        .unwrap_or(pipeline.adapter().info().default_lookback_days)
        .max(1);
    let since = today
        .checked_sub_days(Days::new(u64::from(lookback - 1)))
        .unwrap_or(today);
    let started = Utc::now().timestamp_millis();
    let mut run = PullRun {
        id: uuid::Uuid::new_v4().to_string(),
        pipeline: pipeline.config.name.clone(),
        account: account.to_owned(),
        since: since.to_string(),
        until: today.to_string(),
        started_at_ms: started,
        finished_at_ms: started,
        status: "ok".into(),
        pages: 0,
        rows: 0,
        retries: 0,
        error: None,
    };
    if let Err(error) = fetch_all(app, pipeline, account, since, today, &mut run).await {
        tracing::warn!(pipeline = %pipeline.config.name, account, "pull failed: {error}");
        run.status = "failed".into();
        run.error = Some(error.to_string());
    }
    run.finished_at_ms = Utc::now().timestamp_millis();
    run
}

/// The first wait before re-sending a request a plugin asked for again (a
/// poll), doubled at each further poll up to [`POLL_WAIT_MAX`].
const POLL_WAIT_FIRST: std::time::Duration = std::time::Duration::from_secs(1);
const POLL_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// The same request on the wire (credentials are the host's, not compared).
fn same_request(a: &HttpRequest, b: &HttpRequest) -> bool {
    (a.method == b.method)
        && (a.url == b.url)
        && (a.query == b.query)
        && (a.headers == b.headers)
        && (a.body == b.body)
}

async fn fetch_all(
    app: &App,
    pipeline: &Pipeline,
    account: &str,
    since: NaiveDate,
    until: NaiveDate,
    run: &mut PullRun,
) -> Result<(), PullError> {
    let config = pipeline
        .config
        .pull
        .as_ref()
        .ok_or(PullError::NotConfigured)?;
    if let Some((used, Some(advice))) = pipeline.api_version() {
        if used.status() == "expired" {
            // The platform refuses a version past its sunset: say why, send nothing.
            return Err(PullError::Sunset(advice));
        }
    }
    let request = PullRequest {
        account_id: account.to_owned(),
        since: wit_date(since),
        until: wit_date(until),
        base_url: config.base_url.as_ref().map(Url::to_string),
        options: pipeline.options.clone(),
    };
    if let Some(unavailable) = pipeline.plugin.unavailable(&pipeline.config.name) {
        return Err(PullError::Plan(unavailable.message(&pipeline.config.name)));
    }
    let adapter = pipeline.adapter();
    let planned = {
        let _slot = pipeline
            .plugin
            .call_slot()
            .await
            .map_err(|e| PullError::Plan(e.to_string()))?;
        let planned = tokio::task::spawn_blocking(move || adapter.plan_pull(&request))
            .await
            .map_err(|e| PullError::Plan(e.to_string()))?;
        if !matches!(planned, Err(CallError::Busy { .. })) {
            let fault = matches!(&planned, Err(e) if !matches!(e, CallError::Rejected(_)));
            pipeline.plugin.record(&pipeline.config.name, fault);
        }
        planned.map_err(|e| PullError::Plan(e.to_string()))?
    };
    let mut queue: std::collections::VecDeque<HttpRequest> = planned.into();
    let mut last: Option<HttpRequest> = None;
    let mut poll_wait = POLL_WAIT_FIRST;
    while let Some(request) = queue.pop_front() {
        if run.pages >= i64::from(config.max_pages) {
            return Err(PullError::TooManyPages(config.max_pages));
        }
        // A next page that is the request just answered is a poll (an
        // asynchronous report not ready yet): wait before asking again,
        // longer each time, rather than hammer the platform.
        if last
            .as_ref()
            .is_some_and(|last| same_request(last, &request))
        {
            tokio::time::sleep(poll_wait).await;
            poll_wait = (poll_wait * 2).min(POLL_WAIT_MAX);
        } else {
            poll_wait = POLL_WAIT_FIRST;
        }
        last = Some(request.clone());
        let (url, body) = fetch(app, pipeline, &request, run).await?;
        run.pages += 1;
        let overrides = Overrides {
            account_id: Some(account.to_owned()),
            currency: None,
            options: vec![("request.url".into(), url)],
            replay: false,
        };
        let accepted = process(
            app,
            pipeline,
            Origin::Pull,
            Payload::Report(body),
            overrides,
        )
        .await
        .map_err(|f| PullError::Rejected(f.to_string()))?;
        run.rows += accepted.rows as i64;
        if let Some(next) = accepted.next_page {
            queue.push_back(next);
        }
    }
    Ok(())
}

/// Perform one planned request with retries; returns the URL (without
/// credentials) and the body.
async fn fetch(
    app: &App,
    pipeline: &Pipeline,
    request: &HttpRequest,
    run: &mut PullRun,
) -> Result<(String, Vec<u8>), PullError> {
    let mut url = Url::parse(&request.url).map_err(|_| PullError::BadUrl(request.url.clone()))?;
    append_query(&mut url, &request.query)?;
    check_host(pipeline, &url)?;
    let public_url = url.to_string();
    let limit = pipeline
        .config
        .pull
        .as_ref()
        .map_or(crate::config::DEFAULT_MAX_RESPONSE_BYTES, |p| {
            p.max_response_bytes
        });
    let secrets = &pipeline.pull_secrets;
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            headers.insert(n, v);
        }
    }
    // Host-injected secrets travel apart: they are sent to the request's own
    // origin only, never on a redirect to another one; and only with a request
    // that asks for the credential (a pre-signed download, say, asks for none
    // and gets none of the pipeline's secret headers either).
    let mut secret = HeaderMap::new();
    let wants_secrets = !matches!(request.credential, CredentialSlot::None);
    for (name, value) in secrets.headers.iter().filter(|_| wants_secrets) {
        if let (Ok(n), Ok(mut v)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.expose()),
        ) {
            v.set_sensitive(true);
            secret.insert(n, v);
        }
    }
    if !matches!(request.credential, CredentialSlot::None) {
        let token = secrets.credential.as_ref().ok_or_else(|| {
            PullError::MissingCredential(
                pipeline
                    .config
                    .pull
                    .as_ref()
                    .and_then(|p| p.credential_env.clone())
                    .unwrap_or_else(|| "(pull.credential_env)".into()),
            )
        })?;
        match &request.credential {
            CredentialSlot::Bearer => {
                let mut v = HeaderValue::try_from(format!("Bearer {}", token.expose()))
                    .map_err(|e| PullError::Http(e.to_string()))?;
                v.set_sensitive(true);
                secret.insert(reqwest::header::AUTHORIZATION, v);
            }
            CredentialSlot::Header(name) => {
                let n = HeaderName::try_from(name.as_str())
                    .map_err(|e| PullError::Http(e.to_string()))?;
                let mut v = HeaderValue::try_from(token.expose())
                    .map_err(|e| PullError::Http(e.to_string()))?;
                v.set_sensitive(true);
                secret.insert(n, v);
            }
            CredentialSlot::Query(name) => {
                url.query_pairs_mut().append_pair(name, token.expose());
            }
            CredentialSlot::None => {}
        }
    }
    let method = Method::from_bytes(request.method.as_bytes())
        .map_err(|_| PullError::Http(format!("unsupported method {}", request.method)))?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = send_following(
            app,
            pipeline,
            &method,
            &url,
            &headers,
            &secret,
            request.body.as_deref(),
        )
        .await?;
        let wait = match outcome {
            Ok(mut response) if response.status().is_success() => {
                let body = read_limited(&mut response, limit)
                    .await
                    .map_err(|e| match e {
                        ReadError::TooLarge => PullError::TooLarge(limit),
                        ReadError::Http(e) => {
                            PullError::Http(redact(&e.to_string(), &url, &public_url))
                        }
                    })?;
                return Ok((public_url, body));
            }
            Ok(response) if retryable(response.status()) && attempt < ATTEMPTS => {
                retry_after(response.headers()).unwrap_or(BACKOFF * 2u32.pow(attempt - 1))
            }
            Ok(mut response) => {
                let status = response.status();
                let text = snippet(&mut response).await;
                return Err(PullError::Status {
                    status,
                    snippet: text,
                });
            }
            Err(e) if attempt < ATTEMPTS => {
                tracing::debug!(
                    "pull request failed, retrying: {}",
                    redact(&e.to_string(), &url, &public_url)
                );
                BACKOFF * 2u32.pow(attempt - 1)
            }
            Err(e) => return Err(PullError::Http(redact(&e.to_string(), &url, &public_url))),
        };
        run.retries += 1;
        tokio::time::sleep(wait.min(MAX_RETRY_AFTER)).await;
    }
}

/// Send one request, following redirects here rather than in the client (it
/// follows none): each target must pass the pipeline's allow-list before it is
/// contacted, and the host's secrets go to the original origin only. The outer
/// error is a refusal (not retried), the inner one a transport error.
async fn send_following(
    app: &App,
    pipeline: &Pipeline,
    method: &Method,
    url: &Url,
    headers: &HeaderMap,
    secret: &HeaderMap,
    body: Option<&[u8]>,
) -> Result<Result<reqwest::Response, reqwest::Error>, PullError> {
    let origin = url.origin();
    let mut current = url.clone();
    let mut method = method.clone();
    let mut body = body.map(<[u8]>::to_vec);
    for _ in 0..=MAX_REDIRECTS {
        let mut sent = headers.clone();
        if current.origin() == origin {
            for (name, value) in secret {
                sent.insert(name.clone(), value.clone());
            }
        }
        let mut builder = app
            .http
            .request(method.clone(), current.clone())
            .headers(sent);
        if let Some(body) = &body {
            builder = builder.body(body.clone());
        }
        let response = match builder.send().await {
            Ok(response) => response,
            Err(e) => return Ok(Err(e)),
        };
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok());
        let (true, Some(location)) = (status.is_redirection(), location) else {
            return Ok(Ok(response));
        };
        let next = current
            .join(location)
            .map_err(|_| PullError::BadUrl(location.to_owned()))?;
        if check_host(pipeline, &next).is_err() {
            // Name the target's origin only: a Location may echo a token.
            return Err(PullError::RedirectNotAllowed(
                next.origin().ascii_serialization(),
            ));
        }
        if status == StatusCode::SEE_OTHER
            || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                && method == Method::POST)
        {
            method = Method::GET;
            body = None;
        }
        current = next;
    }
    Err(PullError::TooManyRedirects)
}

enum ReadError {
    TooLarge,
    Http(reqwest::Error),
}

/// The body, read chunk by chunk and abandoned (connection dropped) as soon as
/// it would pass `limit` bytes.
async fn read_limited(response: &mut reqwest::Response, limit: u64) -> Result<Vec<u8>, ReadError> {
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Http)? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The start of an error response, for the run's error: never the whole body.
async fn snippet(response: &mut reqwest::Response) -> String {
    let mut head = Vec::new();
    while head.len() < SNIPPET_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => head.extend_from_slice(&chunk),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).chars().take(300).collect()
}

/// Put the plugin's query on `url` exactly as the plugin wrote it (Rest.li's
/// `List(urn%3Ali%3A...)` and `(start:(year:2026))` go out as they are), after
/// a query already in the URL. Refused when it holds what a URL query may not
/// (RFC 3986 `query`: unreserved, sub-delims, `:`, `@`, `/`, `?` and `%XX`
/// escapes), since sending it would mean re-encoding it.
fn append_query(url: &mut Url, query: &str) -> Result<(), PullError> {
    if query.is_empty() {
        return Ok(());
    }
    let bytes = query.as_bytes();
    let hex = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_hexdigit);
    if let Some((at, &b)) = bytes.iter().enumerate().find(|&(i, &b)| {
        !(b.is_ascii_alphanumeric()
            || b"-._~!$&'()*+,;=:@/?".contains(&b)
            || (b == b'%' && hex(i + 1) && hex(i + 2)))
    }) {
        return Err(PullError::BadUrl(format!(
            "the planned query holds {:?} at byte {at}, which a URL query cannot carry unescaped",
            char::from(b)
        )));
    }
    let joined = match url.query() {
        Some(existing) if !existing.is_empty() => format!("{existing}&{query}"),
        _ => query.to_owned(),
    };
    url.set_query(Some(&joined));
    Ok(())
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// `Retry-After` in seconds (the HTTP-date form falls back to backoff).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Error texts may quote the URL: never with the credential in it.
fn redact(text: &str, url: &Url, public: &str) -> String {
    text.replace(url.as_str(), public)
}

fn check_host(pipeline: &Pipeline, url: &Url) -> Result<(), PullError> {
    let host = url.host_str().unwrap_or_default().to_owned();
    let base = pipeline
        .config
        .pull
        .as_ref()
        .and_then(|p| p.base_url.as_ref());
    let from_base = base.as_ref().is_some_and(|b| {
        b.host_str() == Some(host.as_str())
            && b.port_or_known_default() == url.port_or_known_default()
    });
    let allowed = pipeline
        .adapter()
        .info()
        .allowed_hosts
        .iter()
        .any(|h| h.eq_ignore_ascii_case(&host));
    if from_base || (allowed && url.scheme() == "https") {
        Ok(())
    } else {
        Err(PullError::HostNotAllowed(format!(
            "{}://{host}",
            url.scheme()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_query(base: &str, query: &str) -> Result<String, PullError> {
        let mut url = Url::parse(base).expect("url");
        append_query(&mut url, query)?;
        Ok(url.to_string())
    }

    #[test]
    fn restli_queries_are_sent_as_the_plugin_built_them() {
        let query = "q=statistics&pivots=List(CAMPAIGN,CREATIVE)\
             &dateRange=(start:(year:2026,month:11,day:1),end:(year:2026,month:11,day:14))\
             &accounts=List(urn%3Ali%3AsponsoredAccount%3A509876)";
        let url = with_query("https://api.linkedin.com/rest/adAnalytics", query).expect("valid");
        assert_eq!(
            url,
            format!("https://api.linkedin.com/rest/adAnalytics?{query}")
        );
        let url = with_query("http://127.0.0.1:9/x?page=2", "a=%7B%22b%22%7D").expect("valid");
        assert_eq!(url, "http://127.0.0.1:9/x?page=2&a=%7B%22b%22%7D");
    }

    #[test]
    fn queries_a_url_cannot_carry_are_refused_not_reencoded() {
        for bad in [
            "a=b c",
            "a={\"b\"}",
            "a=caf\u{e9}",
            "a=100%",
            "a=#1",
            "a=<x>",
        ] {
            assert!(
                matches!(
                    with_query("http://127.0.0.1:9/x", bad),
                    Err(PullError::BadUrl(_))
                ),
                "{bad}"
            );
        }
    }
}
