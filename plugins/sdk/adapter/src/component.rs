//! The WIT side of [`crate::Adapter`]: bindings of the `adapter-plugin` world
//! and the conversions between WIT types and the SDK's native types, so that
//! plugin crates only call [`crate::export_adapter!`].

wit_bindgen::generate!({
    world: "adapter-plugin",
    path: "../../../wit",
    pub_export_macro: true,
    export_macro_name: "export_adapter_world",
    default_bindings_module: "adpipe_plugin_sdk::component",
});

use std::marker::PhantomData;

use adpipe::plugin::types as wit;
use exports::adpipe::plugin::adapter as api;

use crate as sdk;

/// Wraps an [`sdk::Adapter`] as the component's exports.
pub struct Exported<A>(PhantomData<A>);

fn error(e: sdk::PluginError) -> wit::PluginError {
    use sdk::ErrorKind as K;
    let kind = match e.kind {
        K::Malformed => wit::ErrorKind::Malformed,
        K::InvalidShape => wit::ErrorKind::InvalidShape,
        K::InvalidValue => wit::ErrorKind::InvalidValue,
        K::PlatformError => wit::ErrorKind::PlatformError,
        K::MissingContext => wit::ErrorKind::MissingContext,
        K::Unsupported => wit::ErrorKind::Unsupported,
    };
    wit::PluginError {
        kind,
        path: e.path,
        message: e.message,
    }
}

fn date(d: sdk::Date) -> wit::Date {
    wit::Date {
        year: d.year,
        month: d.month,
        day: d.day,
    }
}

fn sdk_date(d: wit::Date, path: &str) -> Result<sdk::Date, wit::PluginError> {
    sdk::Date::new(d.year, d.month, d.day).ok_or_else(|| wit::PluginError {
        kind: wit::ErrorKind::InvalidValue,
        path: path.into(),
        message: format!("{}-{}-{} is not a date", d.year, d.month, d.day),
    })
}

fn http_request(r: sdk::HttpRequest) -> wit::HttpRequest {
    use sdk::CredentialSlot as C;
    wit::HttpRequest {
        method: r.method,
        url: r.url,
        query: r.query,
        headers: r.headers,
        body: r.body,
        credential: match r.credential {
            C::None => wit::CredentialSlot::None,
            C::Bearer => wit::CredentialSlot::Bearer,
            C::Header(h) => wit::CredentialSlot::Header(h),
            C::Query(q) => wit::CredentialSlot::Query(q),
        },
    }
}

fn batch(b: sdk::RowBatch) -> wit::RowBatch {
    use sdk::RowKind as K;
    wit::RowBatch {
        strings: b.strings,
        rows: b
            .rows
            .into_iter()
            .map(|r| wit::Row {
                kind: match r.kind {
                    K::Snapshot => wit::RowKind::Snapshot,
                    K::Delta => wit::RowKind::Delta,
                },
                account_id: r.account_id,
                campaign_id: r.campaign_id,
                campaign_name: r.campaign_name,
                ad_group_id: r.ad_group_id,
                ad_id: r.ad_id,
                date: date(r.date),
                hour: r.hour,
                currency: r.currency,
                impressions: r.impressions,
                clicks: r.clicks,
                spend_micros: r.spend_micros,
                conversions_micros: r.conversions_micros,
                conversion_value_micros: r.conversion_value_micros,
                observed_at_ms: r.observed_at_ms,
                dedup_key: r.dedup_key,
            })
            .collect(),
        extras: b
            .extras
            .into_iter()
            .map(|e| wit::ExtraMetric {
                row: e.row,
                name: e.name,
                value_micros: e.value_micros,
            })
            .collect(),
        notices: b.notices,
        next_page: b.next_page.map(http_request),
    }
}

fn context(c: wit::ParseContext) -> sdk::ParseContext {
    sdk::ParseContext {
        options: c.options,
        account_id: c.account_id,
        currency: c.currency,
        received_at_ms: c.received_at_ms,
    }
}

impl<A: sdk::Adapter> api::Guest for Exported<A> {
    fn describe() -> api::AdapterInfo {
        use sdk::SignatureScheme as S;
        let info = A::describe();
        api::AdapterInfo {
            name: info.name,
            version: info.version,
            platform: info.platform,
            signature: match info.signature {
                S::None => api::SignatureScheme::None,
                S::HmacSha256Body { header, prefix } => {
                    api::SignatureScheme::HmacSha256Body(api::HmacHeader { header, prefix })
                }
                S::HmacSha256Timestamped {
                    header,
                    max_age_seconds,
                } => api::SignatureScheme::HmacSha256Timestamped(api::TimestampedHeader {
                    header,
                    max_age_seconds,
                }),
            },
            allowed_hosts: info.allowed_hosts,
            default_lookback_days: info.default_lookback_days,
        }
    }

    fn handshake(query: Vec<(String, String)>) -> api::HandshakePlan {
        use sdk::HandshakePlan as H;
        match A::handshake(&query) {
            H::EchoIfToken { token, challenge } => {
                api::HandshakePlan::EchoIfToken(api::EchoChallenge { token, challenge })
            }
            H::HmacChallenge(code) => api::HandshakePlan::HmacChallenge(code),
            H::Reject(reason) => api::HandshakePlan::Reject(reason),
        }
    }

    fn parse_webhook(
        request: api::WebhookRequest,
        ctx: wit::ParseContext,
    ) -> Result<wit::RowBatch, wit::PluginError> {
        let request = sdk::WebhookRequest {
            query: request.query,
            headers: request.headers,
            body: request.body,
        };
        A::parse_webhook(&request, &context(ctx))
            .map(batch)
            .map_err(error)
    }

    fn parse_report(
        body: Vec<u8>,
        ctx: wit::ParseContext,
    ) -> Result<wit::RowBatch, wit::PluginError> {
        A::parse_report(&body, &context(ctx))
            .map(batch)
            .map_err(error)
    }

    fn plan_pull(request: api::PullRequest) -> Result<Vec<wit::HttpRequest>, wit::PluginError> {
        let native = sdk::PullRequest {
            account_id: request.account_id,
            from: sdk_date(request.since, "/since")?,
            to: sdk_date(request.until, "/until")?,
            base_url: request.base_url,
            options: request.options,
        };
        A::plan_pull(&native)
            .map(|list| list.into_iter().map(http_request).collect())
            .map_err(error)
    }
}
