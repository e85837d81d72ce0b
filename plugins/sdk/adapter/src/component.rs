//! The WIT side of [`crate::Adapter`]: bindings of the `adapter-plugin` world
//! and the conversions between WIT types and the SDK's native types, so that
//! plugin crates only call [`crate::export_adapter!`].

wit_bindgen::generate!({
    world: "adapter-plugin",
    // `wit/` is a link to the repository's `wit/0.2.0` (one copy of the
    // contract); `adpipe plugin new` writes the file itself into a vendored SDK.
    path: "wit",
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
        query: r.query_string(),
        method: r.method,
        url: r.url,
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

/// The SDK's rows, column by column (string index 0 is `""`, "absent").
fn batch(b: sdk::RowBatch) -> wit::RowBatch {
    use sdk::RowKind as K;
    let n = b.rows.len();
    let mut c = wit::RowColumns {
        kind: Vec::with_capacity(n),
        bucket: Vec::with_capacity(n),
        day: Vec::with_capacity(n),
        hour: Vec::with_capacity(n),
        event_at_ms: Vec::with_capacity(n),
        account_id: Vec::with_capacity(n),
        campaign_id: Vec::with_capacity(n),
        campaign_name: Vec::with_capacity(n),
        ad_group_id: Vec::with_capacity(n),
        ad_group_name: Vec::with_capacity(n),
        ad_id: Vec::with_capacity(n),
        ad_name: Vec::with_capacity(n),
        breakdown: Vec::with_capacity(n),
        currency: Vec::with_capacity(n),
        dedup_key: Vec::with_capacity(n),
        impressions: Vec::with_capacity(n),
        clicks: Vec::with_capacity(n),
        spend_micros: Vec::with_capacity(n),
        conversions_micros: Vec::with_capacity(n),
        conversion_value_micros: Vec::with_capacity(n),
        observed_at_ms: Vec::with_capacity(n),
    };
    let s = |i: Option<sdk::Str>| i.unwrap_or(0);
    for r in b.rows {
        c.kind.push(match r.kind {
            K::Snapshot => wit::RowKind::Snapshot,
            K::Delta => wit::RowKind::Delta,
        });
        c.bucket.push(match (r.event_at_ms, r.hour) {
            (Some(_), _) => wit::BucketKind::Event,
            (None, Some(_)) => wit::BucketKind::Hourly,
            (None, None) => wit::BucketKind::Daily,
        });
        c.day
            .push(i32::try_from(r.date.days_since_epoch()).unwrap_or(i32::MIN));
        c.hour.push(r.hour.unwrap_or(0));
        c.event_at_ms.push(r.event_at_ms.unwrap_or(0));
        c.account_id.push(s(r.account_id));
        c.campaign_id.push(s(r.campaign_id));
        c.campaign_name.push(s(r.campaign_name));
        c.ad_group_id.push(s(r.ad_group_id));
        c.ad_group_name.push(s(r.ad_group_name));
        c.ad_id.push(s(r.ad_id));
        c.ad_name.push(s(r.ad_name));
        c.breakdown.push(s(r.breakdown));
        c.currency.push(s(r.currency));
        c.dedup_key.push(s(r.dedup_key));
        c.impressions.push(r.impressions);
        c.clicks.push(r.clicks);
        c.spend_micros.push(r.spend_micros);
        c.conversions_micros.push(r.conversions_micros);
        c.conversion_value_micros.push(r.conversion_value_micros);
        c.observed_at_ms.push(r.observed_at_ms.unwrap_or(0));
    }
    let mut extras = wit::ExtraColumns {
        row: Vec::with_capacity(b.extras.len()),
        name: Vec::with_capacity(b.extras.len()),
        value_micros: Vec::with_capacity(b.extras.len()),
    };
    for e in b.extras {
        extras.row.push(e.row);
        extras.name.push(e.name);
        extras.value_micros.push(e.value_micros);
    }
    let mut strings = b.strings;
    if strings.first().is_none_or(|s| !s.is_empty()) {
        // A batch not made by `BatchBuilder`: give it the absent entry.
        strings.insert(0, String::new());
        for column in [
            &mut c.account_id,
            &mut c.campaign_id,
            &mut c.campaign_name,
            &mut c.ad_group_id,
            &mut c.ad_group_name,
            &mut c.ad_id,
            &mut c.ad_name,
            &mut c.breakdown,
            &mut c.currency,
            &mut c.dedup_key,
        ] {
            column.iter_mut().for_each(|i| *i = i.saturating_add(1));
        }
        extras
            .name
            .iter_mut()
            .for_each(|i| *i = i.saturating_add(1));
    }
    wit::RowBatch {
        strings,
        rows: c,
        extras,
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
                S::HmacSha256 {
                    header,
                    header_prefix,
                    signed_prefix,
                } => api::SignatureScheme::HmacSha256(api::HmacSpec {
                    header,
                    header_prefix,
                    signed_prefix,
                }),
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
            options: info
                .options
                .into_iter()
                .map(|o| api::OptionSpec {
                    name: o.name,
                    type_: match o.kind {
                        sdk::OptionType::String => api::OptionType::String,
                        sdk::OptionType::Integer => api::OptionType::Integer,
                        sdk::OptionType::Decimal => api::OptionType::Decimal,
                        sdk::OptionType::Boolean => api::OptionType::Boolean,
                        sdk::OptionType::List => api::OptionType::List,
                    },
                    default: o.default,
                    required: o.required,
                    help: o.help,
                })
                .collect(),
            api_versions: info
                .api_versions
                .into_iter()
                .map(|v| api::ApiVersion {
                    name: v.name,
                    sunset: v.sunset.map(date),
                })
                .collect(),
            extra_metrics: info.extra_metrics,
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
