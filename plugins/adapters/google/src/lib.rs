//! The Google Ads API adapter for adpipe.
//!
//! Parses `GoogleAdsService.SearchStream` (a JSON array of batches, each with
//! `results`) and `Search` (`results` plus `nextPageToken`) REST responses of
//! GAQL queries over `campaign`, `ad_group` or `ad_group_ad` segmented by
//! `segments.date` (and optionally `segments.hour`), in the protobuf JSON
//! mapping: camelCase names, int64 as strings, zero values absent,
//! `metrics.conversions` / `metrics.conversionsValue` as fractional doubles.
//!
//! Google Ads has no metric webhooks: `describe` says so, and the host answers
//! the webhook route with 404. Pulls use `searchStream` (one response, no paging).

use adpipe_plugin_sdk::num::{count_at, micros_at, whole_micros_at, Num, Text};
use adpipe_plugin_sdk::{
    Adapter, AdapterInfo, ApiVersion, BatchBuilder, CredentialSlot, Date, ErrorKind, HttpRequest,
    OptionSpec, OptionType, ParseContext, PluginError, PullRequest, Repeating, Row, RowBatch,
    RowKind, SignatureScheme,
};
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::borrow::Cow;

use serde_json::Value;

pub const API: &str = "https://googleads.googleapis.com";
/// Google Ads API major versions, newest first, with their sunset dates
/// (developers.google.com/google-ads/api/docs/sunset-dates: a major version
/// lives about 12 months; v21 sunset 2026-08-05, v22 2026-10-07). v23's date
/// is Google's projected schedule (Sept 2025 post), not yet announced: adpipe
/// warns ahead of it all the same.
pub const API_VERSIONS: &[(&str, Option<&str>)] = &[
    ("v26", None),
    ("v25", None),
    ("v24", None),
    ("v23", Some("2027-02-01")),
];

/// The Google Ads adapter, as the component exports it.
pub struct Google;

impl Adapter for Google {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            name: "google".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            platform: "google".into(),
            signature: SignatureScheme::None,
            allowed_hosts: vec!["googleads.googleapis.com".into()],
            default_lookback_days: 14,
            options: vec![
                OptionSpec::new(
                    "level",
                    OptionType::String,
                    "GAQL resource of scheduled pulls: campaign, ad_group or ad_group_ad",
                )
                .default_value("ad_group_ad"),
                OptionSpec::new(
                    "login_customer_id",
                    OptionType::String,
                    "manager account id sent as login-customer-id (pulls through an MCC)",
                ),
            ],
            api_versions: API_VERSIONS
                .iter()
                .map(|(name, sunset)| ApiVersion::new(name, *sunset))
                .collect(),
            extra_metrics: vec!["video_views".into(), "all_conversions".into()],
        }
    }

    fn parse_report(body: &[u8], ctx: &ParseContext) -> Result<RowBatch, PluginError> {
        parse_report(body, ctx)
    }

    fn plan_pull(request: &PullRequest) -> Result<Vec<HttpRequest>, PluginError> {
        plan_pull(request)
    }
}

adpipe_plugin_sdk::export_adapter!(Google);

/// One `SearchGoogleAdsResponse` or `SearchGoogleAdsStreamResponse` chunk.
/// Proto3 JSON omits empty repeated fields, so a page without rows has no
/// `results` at all: `{"fieldMask": "...", "requestId": "..."}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Batch<'a> {
    #[serde(borrow, default)]
    results: Option<Vec<SearchRow<'a>>>,
    #[serde(borrow, default)]
    next_page_token: Option<Text<'a>>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    field_mask: Option<IgnoredAny>,
    #[serde(default)]
    request_id: Option<IgnoredAny>,
    #[serde(default)]
    total_results_count: Option<IgnoredAny>,
    #[serde(default)]
    summary_row: Option<IgnoredAny>,
    #[serde(default)]
    query_resource_consumption: Option<IgnoredAny>,
}

impl Batch<'_> {
    /// Carries a field only a Search/SearchStream response has (besides `results`).
    fn is_response(&self) -> bool {
        self.next_page_token.is_some()
            || self.field_mask.is_some()
            || self.request_id.is_some()
            || self.total_results_count.is_some()
            || self.summary_row.is_some()
            || self.query_resource_consumption.is_some()
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SearchRow<'a> {
    #[serde(borrow, default)]
    customer: Option<Customer<'a>>,
    #[serde(borrow, default)]
    campaign: Option<Resource<'a>>,
    #[serde(borrow, default)]
    ad_group: Option<Resource<'a>>,
    #[serde(borrow, default)]
    ad_group_ad: Option<AdGroupAd<'a>>,
    #[serde(borrow, default)]
    metrics: Option<Metrics<'a>>,
    #[serde(borrow, default)]
    segments: Option<Segments<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Customer<'a> {
    #[serde(borrow, default)]
    resource_name: Option<Text<'a>>,
    #[serde(borrow, default)]
    id: Option<Num<'a>>,
    #[serde(borrow, default)]
    currency_code: Option<Text<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Resource<'a> {
    #[serde(borrow, default)]
    resource_name: Option<Text<'a>>,
    #[serde(borrow, default)]
    id: Option<Num<'a>>,
    #[serde(borrow, default)]
    name: Option<Text<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AdGroupAd<'a> {
    #[serde(borrow, default)]
    resource_name: Option<Text<'a>>,
    #[serde(borrow, default)]
    ad: Option<Resource<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Metrics<'a> {
    #[serde(borrow, default)]
    impressions: Option<Num<'a>>,
    #[serde(borrow, default)]
    clicks: Option<Num<'a>>,
    #[serde(borrow, default)]
    cost_micros: Option<Num<'a>>,
    #[serde(borrow, default)]
    conversions: Option<Num<'a>>,
    #[serde(borrow, default)]
    conversions_value: Option<Num<'a>>,
    #[serde(borrow, default)]
    video_views: Option<Num<'a>>,
    #[serde(borrow, default)]
    all_conversions: Option<Num<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Segments<'a> {
    #[serde(borrow, default)]
    date: Option<Text<'a>>,
    #[serde(default)]
    hour: Option<u8>,
    // Segments that split an entity-day into several rows: part of the row's identity.
    #[serde(borrow, default)]
    ad_network_type: Option<Text<'a>>,
    #[serde(borrow, default)]
    click_type: Option<Text<'a>>,
    #[serde(borrow, default)]
    device: Option<Text<'a>>,
    #[serde(borrow, default)]
    slot: Option<Text<'a>>,
    #[serde(borrow, default)]
    conversion_action: Option<Text<'a>>,
}

impl Segments<'_> {
    /// The canonical breakdown key of the row's splitting segments.
    fn breakdown(&self) -> Option<String> {
        let segments = [
            ("ad_network_type", &self.ad_network_type),
            ("click_type", &self.click_type),
            ("conversion_action", &self.conversion_action),
            ("device", &self.device),
            ("slot", &self.slot),
        ];
        adpipe_plugin_sdk::breakdown_key(
            segments
                .iter()
                .filter_map(|(name, value)| Some((*name, value.as_deref()?))),
        )
    }
}

/// `customers/123/adGroupAds/456~789` → the segment after `kind/`.
fn id_from_resource<'r>(resource: &'r str, kind: &str) -> Option<&'r str> {
    let mut parts = resource.split('/');
    while let Some(p) = parts.next() {
        if p == kind {
            return parts.next();
        }
    }
    None
}

fn platform_error(error: &Value) -> PluginError {
    let status = error
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("UNKNOWN");
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("(no message)");
    let code = error
        .get("code")
        .map(|c| c.to_string())
        .unwrap_or_else(|| "?".into());
    PluginError::new(
        ErrorKind::PlatformError,
        "/error",
        format!("Google Ads API error {code} {status}: {message}"),
    )
}

/// Parse a SearchStream or Search response.
pub fn parse_report(body: &[u8], ctx: &ParseContext) -> Result<RowBatch, PluginError> {
    // SearchStream answers a JSON array of batches, Search a single object.
    let stream = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let batches: Vec<Batch<'_>> = if stream {
        adpipe_plugin_sdk::json::from_body(body).map_err(|e| explain(body, e))?
    } else {
        vec![adpipe_plugin_sdk::json::from_body(body).map_err(|e| explain(body, e))?]
    };
    let mut out = BatchBuilder::new();
    for (b, batch) in batches.iter().enumerate() {
        let prefix = if stream {
            format!("/{b}")
        } else {
            String::new()
        };
        if let Some(error) = &batch.error {
            return Err(platform_error(error));
        }
        let Some(results) = &batch.results else {
            if stream || batch.is_response() {
                continue; // proto3 JSON omits an empty `results`: no rows matched
            }
            return Err(PluginError::shape(
                format!("{prefix}/results"),
                "missing: expected a GoogleAdsService Search or SearchStream response \
                 (`results`, `fieldMask`, `requestId`...)",
            ));
        };
        for (i, result) in results.iter().enumerate() {
            row(&mut out, result, ctx, &|field: &str| {
                format!("{prefix}/results/{i}/{field}")
            })?;
        }
        if let Some(token) = &batch.next_page_token {
            out.notice(format!(
                "Search response continues (nextPageToken {token}): push the next page too"
            ));
        }
    }
    Ok(out.finish())
}

fn row(
    out: &mut BatchBuilder,
    r: &SearchRow<'_>,
    ctx: &ParseContext,
    at: &dyn Fn(&str) -> String,
) -> Result<(), PluginError> {
    // Ids borrow from the payload (no copy per row) unless built from context.
    let customer = r.customer.as_ref();
    let account: Cow<'_, str> = customer
        .and_then(|c| c.id.as_ref().map(|i| i.text()))
        .or_else(|| {
            customer
                .and_then(|c| c.resource_name.as_deref())
                .and_then(|rn| id_from_resource(rn, "customers"))
                .map(Cow::Borrowed)
        })
        .or_else(|| {
            r.campaign
                .as_ref()
                .and_then(|c| c.resource_name.as_deref())
                .and_then(|rn| id_from_resource(rn, "customers"))
                .map(Cow::Borrowed)
        })
        .or_else(|| {
            ctx.account_id
                .as_deref()
                .map(|a| Cow::Owned(a.replace('-', "")))
        })
        .ok_or_else(|| {
            PluginError::new(
                ErrorKind::MissingContext,
                at("customer/id"),
                "no customer id: select customer.id or pass ?account_id=",
            )
        })?;
    let campaign = r.campaign.as_ref();
    let campaign_id: Cow<'_, str> = campaign
        .and_then(|c| c.id.as_ref().map(|i| i.text()))
        .or_else(|| {
            campaign
                .and_then(|c| c.resource_name.as_deref())
                .and_then(|rn| id_from_resource(rn, "campaigns"))
                .map(Cow::Borrowed)
        })
        .ok_or_else(|| {
            let level = if r.ad_group_ad.is_some() {
                "an ad_group_ad (ad-level) row"
            } else if r.ad_group.is_some() {
                "an ad_group (ad-group-level) row"
            } else {
                "a row without campaign, ad_group or ad_group_ad (customer-level)"
            };
            PluginError::shape(
                at("campaign/id"),
                format!(
                    "missing: {level} without campaign.id; add campaign.id to the query's SELECT"
                ),
            )
        })?;
    let ad_group_ad_key = r
        .ad_group_ad
        .as_ref()
        .and_then(|a| a.resource_name.as_deref())
        .and_then(|rn| id_from_resource(rn, "adGroupAds"));
    let ad_group_id: Option<Cow<'_, str>> = r
        .ad_group
        .as_ref()
        .and_then(|g| {
            g.id.as_ref().map(|i| i.text()).or_else(|| {
                g.resource_name
                    .as_deref()
                    .and_then(|rn| id_from_resource(rn, "adGroups"))
                    .map(Cow::Borrowed)
            })
        })
        .or_else(|| {
            ad_group_ad_key
                .and_then(|k| k.split('~').next())
                .map(Cow::Borrowed)
        });
    let ad_id: Option<Cow<'_, str>> = r.ad_group_ad.as_ref().and_then(|a| {
        a.ad.as_ref()
            .and_then(|ad| ad.id.as_ref().map(|i| i.text()))
            .or_else(|| {
                ad_group_ad_key
                    .and_then(|k| k.split('~').nth(1))
                    .map(Cow::Borrowed)
            })
    });
    let segments = r.segments.as_ref();
    let day = segments.and_then(|s| s.date.as_deref()).ok_or_else(|| {
        PluginError::shape(
            at("segments/date"),
            "missing: segment the query by segments.date",
        )
    })?;
    let date =
        Date::try_parse(day).map_err(|e| PluginError::value(at("segments/date"), e.to_string()))?;
    let hour = segments.and_then(|s| s.hour);
    if hour.is_some_and(|h| h > 23) {
        return Err(PluginError::value(at("segments/hour"), "must be 0..=23"));
    }
    let default = Metrics::default();
    let m = r.metrics.as_ref().unwrap_or(&default);
    let count = |v: &Option<Num<'_>>, f: &str| count_at(v.as_ref(), || at(f));
    let micros = |v: &Option<Num<'_>>, f: &str| micros_at(v.as_ref(), || at(f));
    // int64 micros already.
    let spend = whole_micros_at(m.cost_micros.as_ref(), || at("metrics/costMicros"))?;
    let row = Row {
        kind: RowKind::Snapshot,
        account_id: Some(out.intern_repeating(&account, Repeating::Account)),
        campaign_id: Some(out.intern_repeating(&campaign_id, Repeating::Campaign)),
        campaign_name: out.intern_repeating_opt(
            campaign.and_then(|c| c.name.as_deref()),
            Repeating::CampaignName,
        ),
        ad_group_id: out.intern_repeating_opt(ad_group_id.as_deref(), Repeating::AdGroup),
        ad_group_name: out.intern_repeating_opt(
            r.ad_group.as_ref().and_then(|g| g.name.as_deref()),
            Repeating::AdGroupName,
        ),
        ad_id: ad_id.as_deref().map(|a| out.intern(a)),
        ad_name: out.intern_opt(
            r.ad_group_ad
                .as_ref()
                .and_then(|a| a.ad.as_ref())
                .and_then(|ad| ad.name.as_deref()),
        ),
        breakdown: segments
            .and_then(Segments::breakdown)
            .map(|key| out.intern(&key)),
        date,
        hour,
        event_at_ms: None,
        currency: out.intern_repeating_opt(
            customer.and_then(|c| c.currency_code.as_deref()),
            Repeating::Currency,
        ),
        impressions: count(&m.impressions, "metrics/impressions")?,
        clicks: count(&m.clicks, "metrics/clicks")?,
        spend_micros: spend,
        conversions_micros: micros(&m.conversions, "metrics/conversions")?,
        conversion_value_micros: micros(&m.conversions_value, "metrics/conversionsValue")?,
        observed_at_ms: None,
        dedup_key: None,
    };
    let index = out.push(row);
    out.extra(
        index,
        "video_views",
        micros(&m.video_views, "metrics/videoViews")?,
    );
    out.extra(
        index,
        "all_conversions",
        micros(&m.all_conversions, "metrics/allConversions")?,
    );
    Ok(())
}

/// Why a body did not deserialize: Google's error envelope, invalid JSON, or a path.
fn explain(body: &[u8], error: serde_json::Error) -> PluginError {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return PluginError::malformed(format!("not valid JSON: {error}"));
    };
    let batches: Vec<(String, &Value)> = match &value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("/{i}"), v))
            .collect(),
        Value::Object(_) => vec![(String::new(), &value)],
        _ => {
            return PluginError::shape(
                "",
                "expected a Search response object or a SearchStream array",
            )
        }
    };
    for (prefix, batch) in batches {
        if let Some(error) = batch.get("error") {
            return platform_error(error);
        }
        let Some(results) = batch.get("results") else {
            continue;
        };
        let Some(results) = results.as_array() else {
            return PluginError::shape(format!("{prefix}/results"), "expected an array");
        };
        for (i, result) in results.iter().enumerate() {
            let Some(fields) = result.as_object() else {
                return PluginError::shape(format!("{prefix}/results/{i}"), "expected an object");
            };
            for (name, v) in fields {
                if !v.is_object() && !v.is_null() {
                    return PluginError::shape(
                        format!("{prefix}/results/{i}/{name}"),
                        "expected an object",
                    );
                }
                for (field, x) in v.as_object().into_iter().flatten() {
                    let ok = match field.as_str() {
                        "hour" => x.is_u64(),
                        "ad" | "error" => x.is_object(),
                        _ => {
                            x.is_string()
                                || x.is_number()
                                || x.is_null()
                                || x.is_object()
                                || x.is_array()
                                || x.is_boolean()
                        }
                    };
                    let scalar_expected = matches!(
                        field.as_str(),
                        "id" | "resourceName"
                            | "name"
                            | "currencyCode"
                            | "date"
                            | "impressions"
                            | "clicks"
                            | "costMicros"
                            | "conversions"
                            | "conversionsValue"
                    );
                    if !ok || (scalar_expected && !(x.is_string() || x.is_number())) {
                        return PluginError::shape(
                            format!("{prefix}/results/{i}/{name}/{field}"),
                            "unexpected type",
                        );
                    }
                }
            }
        }
    }
    PluginError::shape("", format!("not a GoogleAdsService response: {error}"))
}

/// One `searchStream` POST per customer over the window, at the configured level.
pub fn plan_pull(request: &PullRequest) -> Result<Vec<HttpRequest>, PluginError> {
    let customer = request.account_id.replace('-', "");
    if customer.is_empty() || !customer.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PluginError::value(
            "/account_id",
            format!("`{}` is not a Google Ads customer id", request.account_id),
        ));
    }
    if request.to < request.from {
        return Err(PluginError::value(
            "/until",
            "the window ends before it starts",
        ));
    }
    let level = adpipe_plugin_sdk::option(&request.options, "level").unwrap_or("ad_group_ad");
    let entity = match level {
        "campaign" => "campaign.id, campaign.name",
        "ad_group" => "campaign.id, campaign.name, ad_group.id, ad_group.name",
        "ad_group_ad" => {
            "campaign.id, campaign.name, ad_group.id, ad_group.name, ad_group_ad.ad.id, ad_group_ad.ad.name"
        }
        other => {
            return Err(PluginError::value(
                "/options/level",
                format!("`{other}` is not one of campaign, ad_group, ad_group_ad"),
            ))
        }
    };
    let query = format!(
        "SELECT customer.id, customer.currency_code, {entity}, segments.date, metrics.impressions, metrics.clicks, \
         metrics.cost_micros, metrics.conversions, metrics.conversions_value FROM {level} \
         WHERE segments.date BETWEEN '{}' AND '{}'",
        request.from, request.to
    );
    let version =
        adpipe_plugin_sdk::option(&request.options, "api_version").unwrap_or(API_VERSIONS[0].0);
    let base = request
        .base_url
        .as_deref()
        .unwrap_or(API)
        .trim_end_matches('/');
    let mut headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    if let Some(login) = adpipe_plugin_sdk::option(&request.options, "login_customer_id") {
        headers.push(("login-customer-id".into(), login.replace('-', "")));
    }
    Ok(vec![HttpRequest {
        method: "POST".into(),
        url: format!("{base}/{version}/customers/{customer}/googleAds:searchStream"),
        query: vec![],
        headers,
        body: Some(
            serde_json::json!({ "query": query })
                .to_string()
                .into_bytes(),
        ),
        credential: CredentialSlot::Bearer,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protobuf_json_mapping() {
        let body = br#"[{"results":[{"customer":{"resourceName":"customers/1234567890","id":"1234567890","currencyCode":"EUR"},
            "campaign":{"resourceName":"customers/1234567890/campaigns/111","id":"111","name":"Brand"},
            "adGroupAd":{"resourceName":"customers/1234567890/adGroupAds/222~333","ad":{"resourceName":"customers/1234567890/ads/333","id":"333"}},
            "metrics":{"clicks":"7","costMicros":"1234567","conversions":1.3333333333,"conversionsValue":20.5},
            "segments":{"date":"2026-11-01"}}],"fieldMask":"x","requestId":"r"}]"#;
        let b = parse_report(body, &ParseContext::default()).expect("parses");
        let r = &b.rows[0];
        assert_eq!((r.impressions, r.clicks, r.spend_micros), (0, 7, 1_234_567));
        assert_eq!(
            (r.conversions_micros, r.conversion_value_micros),
            (1_333_333, 20_500_000)
        );
        assert_eq!(
            b.str(r.ad_group_id.expect("ad group")),
            "222",
            "from the adGroupAd resource name"
        );
        assert_eq!(b.str(r.ad_id.expect("ad")), "333");
        assert_eq!(b.str(r.currency.expect("currency")), "EUR");
    }

    #[test]
    fn errors_name_their_path() {
        let e = parse_report(br#"{"results":[{"campaign":{"id":"1"},"segments":{"date":"2026-11-01"},"metrics":{"costMicros":"1.5"}}]}"#, &ParseContext { account_id: Some("1".into()), ..Default::default() }).expect_err("bad cost");
        assert_eq!(e.path, "/results/0/metrics/costMicros");
        let e = parse_report(
            br#"{"results":[{"customer":{"id":"1"},"segments":{"date":"2026-11-01"}}]}"#,
            &ParseContext::default(),
        )
        .expect_err("no campaign");
        assert_eq!(e.path, "/results/0/campaign/id");
        let e = parse_report(
            br#"[{"results":[{"customer":{"id":"1"},"campaign":{"id":"2"}}]}]"#,
            &ParseContext::default(),
        )
        .expect_err("no date");
        assert_eq!(e.path, "/0/results/0/segments/date");
        let e = parse_report(
            br#"{"results":[{"campaign":{"id":["x"]}}]}"#,
            &ParseContext::default(),
        )
        .expect_err("bad id");
        assert_eq!(e.path, "/results/0/campaign/id");
        let e = parse_report(br#"[{"error":{"code":401,"message":"Request is missing required authentication credential.","status":"UNAUTHENTICATED"}}]"#, &ParseContext::default()).expect_err("error");
        assert_eq!(e.kind, ErrorKind::PlatformError);
        assert!(e.message.contains("UNAUTHENTICATED"));
        assert_eq!(
            parse_report(b"{", &ParseContext::default())
                .expect_err("json")
                .kind,
            ErrorKind::Malformed
        );
    }

    #[test]
    fn plans_a_search_stream() {
        let request = PullRequest {
            account_id: "123-456-7890".into(),
            from: Date::new(2026, 11, 1).expect("date"),
            to: Date::new(2026, 11, 14).expect("date"),
            base_url: None,
            options: vec![("login_customer_id".into(), "999-000-1111".into())],
        };
        let plan = plan_pull(&request).expect("plan");
        assert_eq!(
            plan[0].url,
            "https://googleads.googleapis.com/v26/customers/1234567890/googleAds:searchStream"
        );
        let body = String::from_utf8(plan[0].body.clone().expect("body")).expect("utf8");
        assert!(
            body.contains("BETWEEN '2026-11-01' AND '2026-11-14'"),
            "{body}"
        );
        assert!(plan[0]
            .headers
            .contains(&("login-customer-id".into(), "9990001111".into())));
        assert_eq!(plan[0].credential, CredentialSlot::Bearer);
    }
}
