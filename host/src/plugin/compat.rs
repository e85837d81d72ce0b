//! Components built against `adpipe:plugin@0.1.0`: what goes in is converted
//! down to 0.1.0, what comes out is converted up to the current interface, so
//! the rest of the host sees one set of types.
//!
//! What 0.1.0 could not say is filled as 0.1.0 meant it: rows carry no
//! breakdown, names of ad groups and ads or event instants; `hmac-sha256-body`
//! on `X-LI-Signature` is LinkedIn's scheme, which signs `hmacsha256=` + body;
//! query pairs are joined as 0.1.0 hosts sent them (values as written, only
//! what cannot stand in a pair escaped); no options, API versions or extra
//! metrics are declared.

use super::bindings::{v0_1, v0_2};

use v0_1::adapter::adpipe::plugin::types as old;
use v0_1::adapter::exports::adpipe::plugin::adapter as old_api;
use v0_2::adapter::adpipe::plugin::types as new;
use v0_2::adapter::exports::adpipe::plugin::adapter as new_api;

/// The header LinkedIn signs deliveries in; 0.1.0 could not say that its
/// HMAC covers `hmacsha256=` + body, so the host knew it by name.
const LINKEDIN_SIGNATURE_HEADER: &str = "x-li-signature";

pub fn context(c: &new::ParseContext) -> old::ParseContext {
    old::ParseContext {
        options: c.options.clone(),
        account_id: c.account_id.clone(),
        currency: c.currency.clone(),
        received_at_ms: c.received_at_ms,
    }
}

pub fn webhook_request(r: &new_api::WebhookRequest) -> old_api::WebhookRequest {
    old_api::WebhookRequest {
        query: r.query.clone(),
        headers: r.headers.clone(),
        body: r.body.clone(),
    }
}

pub fn pull_request(r: &new_api::PullRequest) -> old_api::PullRequest {
    old_api::PullRequest {
        account_id: r.account_id.clone(),
        since: old_date(r.since),
        until: old_date(r.until),
        base_url: r.base_url.clone(),
        options: r.options.clone(),
    }
}

fn old_date(d: new::Date) -> old::Date {
    old::Date {
        year: d.year,
        month: d.month,
        day: d.day,
    }
}

pub fn error(e: old::PluginError) -> new::PluginError {
    use new::ErrorKind as N;
    use old::ErrorKind as O;
    new::PluginError {
        kind: match e.kind {
            O::Malformed => N::Malformed,
            O::InvalidShape => N::InvalidShape,
            O::InvalidValue => N::InvalidValue,
            O::PlatformError => N::PlatformError,
            O::MissingContext => N::MissingContext,
            O::Unsupported => N::Unsupported,
        },
        path: e.path,
        message: e.message,
    }
}

pub fn info(i: old_api::AdapterInfo) -> new_api::AdapterInfo {
    new_api::AdapterInfo {
        name: i.name,
        version: i.version,
        platform: i.platform,
        signature: match i.signature {
            old_api::SignatureScheme::None => new_api::SignatureScheme::None,
            old_api::SignatureScheme::HmacSha256Body(h) => {
                let signed_prefix = if h.header.eq_ignore_ascii_case(LINKEDIN_SIGNATURE_HEADER) {
                    h.prefix.clone()
                } else {
                    String::new()
                };
                new_api::SignatureScheme::HmacSha256(new_api::HmacSpec {
                    header: h.header,
                    header_prefix: h.prefix,
                    signed_prefix,
                })
            }
            old_api::SignatureScheme::HmacSha256Timestamped(t) => {
                new_api::SignatureScheme::HmacSha256Timestamped(new_api::TimestampedHeader {
                    header: t.header,
                    max_age_seconds: t.max_age_seconds,
                })
            }
        },
        allowed_hosts: i.allowed_hosts,
        default_lookback_days: i.default_lookback_days,
        options: Vec::new(),
        api_versions: Vec::new(),
        extra_metrics: Vec::new(),
    }
}

pub fn handshake(p: old_api::HandshakePlan) -> new_api::HandshakePlan {
    match p {
        old_api::HandshakePlan::EchoIfToken(e) => {
            new_api::HandshakePlan::EchoIfToken(new_api::EchoChallenge {
                token: e.token,
                challenge: e.challenge,
            })
        }
        old_api::HandshakePlan::HmacChallenge(code) => new_api::HandshakePlan::HmacChallenge(code),
        old_api::HandshakePlan::Reject(reason) => new_api::HandshakePlan::Reject(reason),
    }
}

pub fn http_request(r: old::HttpRequest) -> new::HttpRequest {
    new::HttpRequest {
        method: r.method,
        url: r.url,
        query: query_string(&r.query),
        headers: r.headers,
        body: r.body,
        credential: match r.credential {
            old::CredentialSlot::None => new::CredentialSlot::None,
            old::CredentialSlot::Bearer => new::CredentialSlot::Bearer,
            old::CredentialSlot::Header(h) => new::CredentialSlot::Header(h),
            old::CredentialSlot::Query(q) => new::CredentialSlot::Query(q),
        },
    }
}

/// A 0.1.0 batch (rows as records with optional string indices) as columns
/// (string index 0 = absent: the table gets a leading `""`, every index shifts by one).
pub fn batch(b: old::RowBatch) -> new::RowBatch {
    let n = b.rows.len();
    let mut strings = Vec::with_capacity(b.strings.len() + 1);
    strings.push(String::new());
    strings.extend(b.strings);
    let idx = |i: Option<u32>| i.map_or(0, |i| i.saturating_add(1));
    let mut c = new::RowColumns {
        kind: Vec::with_capacity(n),
        bucket: Vec::with_capacity(n),
        day: Vec::with_capacity(n),
        hour: Vec::with_capacity(n),
        event_at_ms: vec![0; n],
        account_id: Vec::with_capacity(n),
        campaign_id: Vec::with_capacity(n),
        campaign_name: Vec::with_capacity(n),
        ad_group_id: Vec::with_capacity(n),
        ad_group_name: vec![0; n],
        ad_id: Vec::with_capacity(n),
        ad_name: vec![0; n],
        breakdown: vec![0; n],
        currency: Vec::with_capacity(n),
        dedup_key: Vec::with_capacity(n),
        impressions: Vec::with_capacity(n),
        clicks: Vec::with_capacity(n),
        spend_micros: Vec::with_capacity(n),
        conversions_micros: Vec::with_capacity(n),
        conversion_value_micros: Vec::with_capacity(n),
        observed_at_ms: Vec::with_capacity(n),
    };
    for r in b.rows {
        c.kind.push(match r.kind {
            old::RowKind::Snapshot => new::RowKind::Snapshot,
            old::RowKind::Delta => new::RowKind::Delta,
        });
        c.bucket.push(if r.hour.is_some() {
            new::BucketKind::Hourly
        } else {
            new::BucketKind::Daily
        });
        c.day.push(days_since_epoch(r.date));
        c.hour.push(r.hour.unwrap_or(0));
        c.account_id.push(idx(r.account_id));
        c.campaign_id.push(idx(r.campaign_id));
        c.campaign_name.push(idx(r.campaign_name));
        c.ad_group_id.push(idx(r.ad_group_id));
        c.ad_id.push(idx(r.ad_id));
        c.currency.push(idx(r.currency));
        c.dedup_key.push(idx(r.dedup_key));
        c.impressions.push(r.impressions);
        c.clicks.push(r.clicks);
        c.spend_micros.push(r.spend_micros);
        c.conversions_micros.push(r.conversions_micros);
        c.conversion_value_micros.push(r.conversion_value_micros);
        c.observed_at_ms.push(r.observed_at_ms.unwrap_or(0));
    }
    let mut extras = new::ExtraColumns {
        row: Vec::with_capacity(b.extras.len()),
        name: Vec::with_capacity(b.extras.len()),
        value_micros: Vec::with_capacity(b.extras.len()),
    };
    for e in b.extras {
        extras.row.push(e.row);
        extras.name.push(e.name.saturating_add(1));
        extras.value_micros.push(e.value_micros);
    }
    new::RowBatch {
        strings,
        rows: c,
        extras,
        notices: b.notices,
        next_page: b.next_page.map(http_request),
    }
}

/// Days since 1970-01-01 of a 0.1.0 date; an impossible date maps to a day
/// outside what any store holds, which normalization then refuses by name.
fn days_since_epoch(d: old::Date) -> i32 {
    adpipe_plugin_sdk::Date::new(d.year, d.month, d.day)
        .and_then(|d| i32::try_from(d.days_since_epoch()).ok())
        .unwrap_or(i32::MIN)
}

/// Join 0.1.0 query pairs the way 0.1.0 hosts sent them: a value goes out as
/// the plugin wrote it (Rest.li's `List(urn%3Ali%3A...)` and
/// `(start:(year:2026))` stay exactly that), so a plugin percent-encoded what
/// it meant literally. Only what cannot stand inside one `key=value` pair is
/// escaped: bytes a URL query may not hold (space, `"`, `#`, `<`, `>`, `'`,
/// brackets and braces, `|`, `\`, `^`, `` ` ``, controls, non-ASCII), `&`, `=`
/// in a key, and a `%` that starts no escape.
pub fn query_string(pairs: &[(String, String)]) -> String {
    adpipe_plugin_sdk::query_string(pairs)
}

/// Metric plugins: the interface did not change, only its version.
pub mod metric {
    use super::v0_1::metric::exports::adpipe::plugin::metric as old;
    use super::v0_2::metric::exports::adpipe::plugin::metric as new;

    pub fn info(i: old::MetricPluginInfo) -> new::MetricPluginInfo {
        new::MetricPluginInfo {
            name: i.name,
            version: i.version,
            metrics: i
                .metrics
                .into_iter()
                .map(|m| new::MetricInfo {
                    name: m.name,
                    unit: match m.unit {
                        old::Unit::Ratio => new::Unit::Ratio,
                        old::Unit::Currency => new::Unit::Currency,
                        old::Unit::Count => new::Unit::Count,
                    },
                    description: m.description,
                    inputs: m.inputs,
                })
                .collect(),
        }
    }

    pub fn request(r: &new::ComputeRequest) -> old::ComputeRequest {
        old::ComputeRequest {
            metrics: r.metrics.clone(),
            columns: r.columns.clone(),
            values: r.values.clone(),
            row_count: r.row_count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_keep_rest_li_syntax_and_escape_what_cannot_stand_in_a_pair() {
        let q = query_string(&[
            (
                "accounts".into(),
                "List(urn%3Ali%3AsponsoredAccount%3A1)".into(),
            ),
            (
                "dateRange".into(),
                "(start:(year:2026,month:11,day:1))".into(),
            ),
            ("q".into(), "a b&c=d#e%zz".into()),
        ]);
        assert_eq!(
            q,
            "accounts=List(urn%3Ali%3AsponsoredAccount%3A1)&dateRange=(start:(year:2026,month:11,day:1))\
             &q=a%20b%26c=d%23e%25zz"
        );
    }

    #[test]
    fn indices_shift_past_the_absent_entry() {
        let b = batch(old::RowBatch {
            strings: vec!["c1".into(), "USD".into()],
            rows: vec![old::Row {
                kind: old::RowKind::Snapshot,
                account_id: None,
                campaign_id: Some(0),
                campaign_name: None,
                ad_group_id: None,
                ad_id: None,
                date: old::Date {
                    year: 2026,
                    month: 11,
                    day: 1,
                },
                hour: Some(5),
                currency: Some(1),
                impressions: 10,
                clicks: 1,
                spend_micros: 2,
                conversions_micros: 0,
                conversion_value_micros: 0,
                observed_at_ms: None,
                dedup_key: None,
            }],
            extras: vec![old::ExtraMetric {
                row: 0,
                name: 0,
                value_micros: 7,
            }],
            notices: vec![],
            next_page: None,
        });
        assert_eq!(b.strings[b.rows.campaign_id[0] as usize], "c1");
        assert_eq!(b.strings[b.rows.currency[0] as usize], "USD");
        assert_eq!(b.rows.account_id[0], 0);
        assert_eq!(b.rows.bucket[0], new::BucketKind::Hourly);
        assert_eq!((b.rows.hour[0], b.rows.day[0]), (5, 20_758));
        assert_eq!(b.strings[b.extras.name[0] as usize], "c1");
    }
}
