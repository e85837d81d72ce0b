//! One payload through a pipeline: adapt (plugin, off the async runtime,
//! bounded per plugin) → normalize → durable bus. Shared by report pushes,
//! webhooks and scheduled pulls; anything rejected after it was accepted for
//! processing is kept in the dead-letter store with its reason.

use crate::app::{App, Pipeline};
use crate::metadata::NewDeadLetter;
use crate::pipeline::normalize::{normalize, IngestContext, NormalizeError};
use crate::plugin::bindings::adapter::adpipe::plugin::types::HttpRequest;
use crate::plugin::{CallError, ParseContext, WebhookRequest};
use crate::row::RowEnvelope;
use crate::telemetry::trace::TraceParent;

use tracing::Instrument as _;

/// What to parse.
pub enum Payload {
    /// A report-API response body (pushed or pulled).
    Report(Vec<u8>),
    /// A verified webhook delivery.
    Webhook(WebhookRequest),
}

impl Payload {
    fn raw(&self) -> &[u8] {
        match self {
            Payload::Report(body) => body,
            Payload::Webhook(request) => &request.body,
        }
    }
}

/// Where a payload came from (recorded with dead letters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Report,
    Webhook,
    Pull,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Report => "report",
            Origin::Webhook => "webhook",
            Origin::Pull => "pull",
        }
    }
}

/// Context a request or a pull adds.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub account_id: Option<String>,
    pub currency: Option<String>,
    /// Extra options for the plugin (e.g. `request.url` of a pulled page).
    pub options: Vec<(String, String)>,
    /// A replay of a kept payload: not kept again.
    pub replay: bool,
}

/// A processed payload.
#[derive(Debug)]
pub struct Accepted {
    pub rows: usize,
    /// The next page, when the payload was one page of several.
    pub next_page: Option<HttpRequest>,
}

/// Why a payload was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// The payload is at fault (400).
    Client,
    /// The payload is not this pipeline's to send (403).
    Forbidden,
    /// The plugin failed (500).
    Plugin,
    /// Storage is unavailable; retry (503).
    Unavailable,
}

/// A rejection, with the dead letter that keeps the payload when there is one.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: FailureKind,
    pub code: &'static str,
    pub message: String,
    pub dead_letter_id: Option<String>,
    /// Seconds after which a retry may succeed (503 answers).
    pub retry_after: Option<u64>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// Parse, normalize, make durable.
pub async fn process(
    app: &App,
    pipeline: &Pipeline,
    origin: Origin,
    payload: Payload,
    overrides: Overrides,
) -> Result<Accepted, Failure> {
    let config = &pipeline.config;
    let mut options = pipeline.options.clone();
    options.extend(overrides.options);
    let replay = overrides.replay;
    let context = ParseContext {
        options,
        account_id: overrides.account_id.or_else(|| config.account_id.clone()),
        currency: overrides.currency.or_else(|| config.currency.clone()),
        received_at_ms: chrono::Utc::now().timestamp_millis(),
    };
    let payload = std::sync::Arc::new(payload);
    if let Some(unavailable) = pipeline.plugin.unavailable(&config.name) {
        let mut failure = dead_letter(
            app,
            pipeline,
            &context,
            origin,
            &payload,
            FailureKind::Unavailable,
            unavailable.code(),
            unavailable.message(&config.name),
        )
        .await;
        failure.retry_after = unavailable.retry_after();
        return Err(failure);
    }
    let adapter = pipeline.adapter();
    let parsed = {
        // A full plugin is back-pressure: answered 503, not kept, not a fault.
        let slot = pipeline.plugin.call_slot().await.map_err(busy)?;
        let (adapter, context, payload) = (adapter.clone(), context.clone(), payload.clone());
        let span = tracing::info_span!(
            "plugin.parse",
            plugin = %pipeline.plugin.config.name,
            version = %adapter.info().version,
            bytes = payload.raw().len(),
            otel.status_code = tracing::field::Empty,
        );
        let result = tokio::task::spawn_blocking(move || {
            span.in_scope(|| {
                let started = std::time::Instant::now();
                let parsed = match payload.as_ref() {
                    Payload::Report(body) => adapter.parse_report(body, &context),
                    Payload::Webhook(request) => adapter.parse_webhook(request, &context),
                };
                if parsed.is_err() {
                    span.record("otel.status_code", "error");
                }
                (parsed, started.elapsed())
            })
        })
        .await;
        drop(slot);
        let result = result.map(|(parsed, elapsed)| {
            app.telemetry
                .plugin_call(&pipeline.plugin.config.name, elapsed);
            parsed
        });
        result.map_err(|e| Failure {
            kind: FailureKind::Plugin,
            code: "plugin_failed",
            message: format!("the plugin task failed: {e}"),
            dead_letter_id: None,
            retry_after: None,
        })?
    };
    // The instance pool was full: back-pressure too.
    let parsed = match parsed {
        Err(error @ CallError::Busy { .. }) => {
            return Err(Failure {
                kind: FailureKind::Unavailable,
                code: "plugin_busy",
                message: error.to_string(),
                dead_letter_id: None,
                retry_after: Some(1),
            })
        }
        other => other,
    };
    let plugin_fault = matches!(&parsed, Err(e) if !matches!(e, CallError::Rejected(_)));
    pipeline.plugin.record(&config.name, plugin_fault);
    let batch = match parsed {
        Ok(batch) => batch,
        Err(error) => {
            let kind = match &error {
                CallError::Rejected(_) => FailureKind::Client,
                CallError::Busy { .. } => FailureKind::Unavailable,
                CallError::Timeout { .. }
                | CallError::OutOfFuel { .. }
                | CallError::OutOfMemory { .. }
                | CallError::Trapped { .. } => FailureKind::Plugin,
            };
            let code = error.code();
            return Err(dead_letter(
                app,
                pipeline,
                &context,
                origin,
                &payload,
                kind,
                code,
                error.to_string(),
            )
            .await);
        }
    };
    if let (Origin::Webhook, Some(allowed)) = (origin, &config.webhook_accounts) {
        let others = super::accounts::not_allowed(
            allowed,
            &adapter.info().platform,
            payload.raw(),
            &batch,
            config.account_id.as_deref(),
        );
        if !others.is_empty() {
            let message = format!(
                "the delivery names account{} {}, which pipeline `{}` does not list in webhook_accounts; nothing of it was ingested",
                if others.len() == 1 { "" } else { "s" },
                others
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                config.name
            );
            return Err(dead_letter(
                app,
                pipeline,
                &context,
                origin,
                &payload,
                FailureKind::Forbidden,
                "account_not_allowed",
                message,
            )
            .await);
        }
    }
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
        timezone: config.timezone,
    };
    let rows = match normalize(&batch, &ctx, app.stamp.next()) {
        Ok(rows) => rows,
        Err(NormalizeError::Client { code, message }) => {
            return Err(dead_letter(
                app,
                pipeline,
                &context,
                origin,
                &payload,
                FailureKind::Client,
                code,
                message,
            )
            .await)
        }
        Err(error @ NormalizeError::Plugin(_)) => {
            pipeline.plugin.record(&config.name, true);
            let message = error.to_string();
            return Err(dead_letter(
                app,
                pipeline,
                &context,
                origin,
                &payload,
                FailureKind::Plugin,
                "invalid_plugin_output",
                message,
            )
            .await);
        }
    };
    let accepted = rows.len();
    let keep_payload = !replay && app.config.server.keep_payloads;
    // Where the bus can carry the kept copy with the rows (the embedded
    // log), one commit makes both durable; the consumer moves the copy to
    // metadata before it applies the rows.
    let carried = if keep_payload && accepted > 0 && app.bus.carries_payloads() {
        match app.metadata.carry_payload(
            &config.tenant,
            &config.name,
            origin.as_str(),
            context.account_id.as_deref(),
            context.currency.as_deref(),
            payload.raw(),
        ) {
            Ok(carried) => Some(carried),
            Err(e) => {
                // The rows go on; only a later replay would miss this payload.
                tracing::error!(pipeline = %config.name, "keeping the payload for replay failed: {e}");
                None
            }
        }
    } else {
        None
    };
    let carrying = carried.is_some();
    let publish = async {
        if accepted == 0 {
            return Ok(());
        }
        let envelope = RowEnvelope {
            tenant: config.tenant.clone(),
            pipeline: config.name.clone(),
            rows,
        };
        // The consumer's `store.apply` continues this span's trace.
        let span = tracing::info_span!("bus.publish", rows = accepted, otel.kind = "producer");
        let trace = TraceParent::of(&span);
        match carried {
            Some(kept) => {
                app.bus
                    .publish_carrying(&envelope, trace.as_ref(), kept)
                    .instrument(span)
                    .await
            }
            None => {
                app.bus
                    .publish(&envelope, trace.as_ref())
                    .instrument(span)
                    .await
            }
        }
    };
    let keep = async {
        if !keep_payload || carrying {
            return None;
        }
        Some(
            app.metadata
                .keep_payload(
                    &config.tenant,
                    &config.name,
                    origin.as_str(),
                    context.account_id.as_deref(),
                    context.currency.as_deref(),
                    payload.raw(),
                )
                .await,
        )
    };
    // The rows' commit and the kept payload's commit run at once (each
    // group-committed with other requests'): a request waits for the slower
    // of the two, not for their sum.
    let (published, kept) = tokio::join!(publish, keep);
    if let Err(e) = published {
        tracing::error!(pipeline = %config.name, "bus publish failed: {e}");
        if let Some(Ok(id)) = &kept {
            // The client is told to retry: drop this copy (a replay of it
            // would be harmless, rows being idempotent, but it was not accepted).
            if let Err(e) = app.metadata.forget_payload(id).await {
                tracing::warn!(pipeline = %config.name, "dropping the kept copy of a refused payload failed: {e}");
            }
        }
        return Err(Failure {
            kind: FailureKind::Unavailable,
            code: "unavailable",
            message: format!("the bus cannot take rows right now ({e}); retry later"),
            dead_letter_id: None,
            retry_after: Some(1),
        });
    }
    if let Some(Err(e)) = kept {
        // The rows are durable; only a later replay would miss this payload.
        tracing::error!(pipeline = %config.name, "keeping the payload for replay failed: {e}");
    }
    app.telemetry
        .ingested(&config.name, &info.platform, accepted as u64);
    pipeline
        .stats
        .accepted(accepted as u64, chrono::Utc::now().timestamp_millis());
    tracing::debug!(pipeline = %config.name, origin = origin.as_str(), accepted, "payload accepted");
    Ok(Accepted {
        rows: accepted,
        next_page: batch.next_page,
    })
}

/// Every call slot of the plugin is taken: `503 plugin_busy` with `Retry-After`.
pub fn busy(busy: crate::plugin::registry::Busy) -> Failure {
    Failure {
        kind: FailureKind::Unavailable,
        code: "plugin_busy",
        message: busy.to_string(),
        dead_letter_id: None,
        retry_after: Some(busy.retry_after),
    }
}

/// Keep the payload with the reason; the failure names the dead letter.
#[allow(clippy::too_many_arguments)]
async fn dead_letter(
    app: &App,
    pipeline: &Pipeline,
    context: &ParseContext,
    origin: Origin,
    payload: &Payload,
    kind: FailureKind,
    code: &'static str,
    message: String,
) -> Failure {
    tracing::warn!(pipeline = %pipeline.config.name, code, origin = origin.as_str(), "payload rejected: {message}");
    let letter = NewDeadLetter {
        tenant: &pipeline.config.tenant,
        pipeline: &pipeline.config.name,
        source: origin.as_str(),
        code,
        message: &message,
        payload: payload.raw(),
        account_id: context.account_id.as_deref(),
        currency: context.currency.as_deref(),
    };
    let on_bus = crate::bus::DeadLetter {
        tenant: &pipeline.config.tenant,
        pipeline: &pipeline.config.name,
        code,
        message: &message,
        payload: payload.raw(),
    };
    if let Err(e) = app.bus.dead_letter(on_bus).await {
        tracing::warn!(pipeline = %pipeline.config.name, "keeping the dead letter on the bus failed (it is kept in metadata): {e}");
    }
    match app.metadata.add_dead_letter(letter).await {
        Ok(id) => {
            app.telemetry.dead_letter(&pipeline.config.name, code);
            Failure {
                kind,
                code,
                message: format!("{message} (payload kept as dead letter {id})"),
                dead_letter_id: Some(id),
                retry_after: None,
            }
        }
        Err(e) => Failure {
            kind: FailureKind::Unavailable,
            code: "unavailable",
            message: format!("{message}; the payload could not be kept ({e}), retry later"),
            dead_letter_id: None,
            retry_after: Some(1),
        },
    }
}
