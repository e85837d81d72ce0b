//! The LinkedIn Marketing API adapter for adpipe.
//!
//! Reports: `adAnalytics` finder responses (`q=analytics` with `pivot`, or
//! `q=statistics` with up to three `pivots`) at `timeGranularity=DAILY` (or
//! `ALL` when the range is one day): `elements[]` with `dateRange.start/end`
//! as `{year, month, day}`, `pivotValues` as URNs, `impressions`, `clicks`,
//! `costInLocalCurrency` (spend; `costInUsd` stands in only when the row's
//! currency is USD, otherwise the row is refused), and
//! `externalWebsiteConversions` / `conversionValueInLocalCurrency`.
//! Rows name no account or currency: they come from the pipeline or the
//! request (`?account_id=`, `?currency=`), or from an ACCOUNT pivot.
//! LinkedIn returns only the metrics `fields` asked for: a counted metric
//! absent from every element of a page was not requested and is refused
//! naming it; absent from some elements only, it is zero there.
//!
//! Webhooks: lead notifications (`LEAD_ACTION`) become `leads` deltas keyed by
//! the form response URN; the host answers the `challengeCode` validation
//! with the client secret and checks `X-LI-Signature`.

use adpipe_plugin_sdk::num::{count_at, micros_at, Num, Text};
use adpipe_plugin_sdk::{
    Adapter, AdapterInfo, ApiVersion, BatchBuilder, CredentialSlot, Date, ErrorKind, HandshakePlan,
    HttpRequest, ParseContext, PluginError, PullRequest, Repeating, Row, RowBatch, RowKind,
    SignatureScheme, WebhookRequest,
};
use serde::Deserialize;
use serde_json::Value;

pub const API: &str = "https://api.linkedin.com";
/// `LinkedIn-Version` values, newest first, with their sunset dates
/// (learn.microsoft.com/linkedin/marketing/versioning: a version is served at
/// least a year, sunsetting mid-month a year after release; the migrations
/// table gives 202601 → 2027-01-15, 202602 → 2027-02-15, 202603 → 2027-03-16;
/// later ones are not announced yet). 202410 sunset 2025-10-15.
pub const API_VERSIONS: &[(&str, Option<&str>)] = &[
    ("202606", None),
    ("202605", None),
    ("202604", None),
    ("202603", Some("2027-03-16")),
    ("202602", Some("2027-02-15")),
    ("202601", Some("2027-01-15")),
];

/// The `LinkedIn-Version` the pipeline asked for, else the newest.
fn linkedin_version(options: &[(String, String)]) -> &str {
    adpipe_plugin_sdk::option(options, "api_version").unwrap_or(API_VERSIONS[0].0)
}

/// The LinkedIn adapter, as the component exports it.
pub struct LinkedIn;

impl Adapter for LinkedIn {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            name: "linkedin".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            platform: "linkedin".into(),
            // LinkedIn signs `hmacsha256=` + body; the header may carry the same prefix.
            signature: SignatureScheme::HmacSha256 {
                header: "x-li-signature".into(),
                header_prefix: "hmacsha256=".into(),
                signed_prefix: "hmacsha256=".into(),
            },
            allowed_hosts: vec!["api.linkedin.com".into()],
            default_lookback_days: 14,
            options: vec![],
            api_versions: API_VERSIONS
                .iter()
                .map(|(name, sunset)| ApiVersion::new(name, *sunset))
                .collect(),
            extra_metrics: vec![
                "leads".into(),
                "one_click_leads".into(),
                "video_views".into(),
            ],
        }
    }

    fn handshake(query: &[(String, String)]) -> HandshakePlan {
        match adpipe_plugin_sdk::option(query, "challengeCode") {
            // LinkedIn sends a type-4 UUID; answering the HMAC of anything else
            // would sign attacker-chosen text (a signing oracle).
            Some(code) if is_uuid(code) => HandshakePlan::HmacChallenge(code.to_owned()),
            Some(_) => HandshakePlan::Reject(
                "challengeCode is not a UUID (8-4-4-4-12 hex digits), so it is not LinkedIn's"
                    .into(),
            ),
            None => HandshakePlan::Reject(
                "not a LinkedIn webhook validation: missing challengeCode".into(),
            ),
        }
    }

    fn parse_report(body: &[u8], ctx: &ParseContext) -> Result<RowBatch, PluginError> {
        parse_report(body, ctx)
    }

    fn parse_webhook(
        request: &WebhookRequest,
        ctx: &ParseContext,
    ) -> Result<RowBatch, PluginError> {
        parse_webhook(&request.body, ctx)
    }

    fn plan_pull(request: &PullRequest) -> Result<Vec<HttpRequest>, PluginError> {
        plan_pull(request)
    }
}

adpipe_plugin_sdk::export_adapter!(LinkedIn);

/// `890e4665-4dfe-4ab1-b689-ed553bceeed0`: 8-4-4-4-12 hex digits, nothing else.
pub fn is_uuid(code: &str) -> bool {
    let groups: Vec<&str> = code.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[derive(Deserialize)]
struct Response<'a> {
    #[serde(borrow, default)]
    elements: Option<Vec<Element<'a>>>,
    #[serde(borrow, default)]
    paging: Option<Paging<'a>>,
    #[serde(borrow, default)]
    message: Option<Text<'a>>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(borrow, default, rename = "serviceErrorCode")]
    service_error_code: Option<Num<'a>>,
}

#[derive(Deserialize)]
struct Paging<'a> {
    #[serde(borrow, default)]
    links: Vec<Link<'a>>,
}

#[derive(Deserialize)]
struct Link<'a> {
    #[serde(borrow, default)]
    rel: Option<Text<'a>>,
    #[serde(borrow, default)]
    href: Option<Text<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Element<'a> {
    #[serde(default)]
    date_range: Option<DateRange>,
    #[serde(borrow, default)]
    pivot_values: Option<Vec<Text<'a>>>,
    #[serde(borrow, default)]
    pivot_value: Option<Text<'a>>,
    #[serde(borrow, default)]
    impressions: Option<Num<'a>>,
    #[serde(borrow, default)]
    clicks: Option<Num<'a>>,
    #[serde(borrow, default)]
    cost_in_local_currency: Option<Num<'a>>,
    #[serde(borrow, default)]
    cost_in_usd: Option<Num<'a>>,
    #[serde(borrow, default)]
    external_website_conversions: Option<Num<'a>>,
    #[serde(borrow, default)]
    conversion_value_in_local_currency: Option<Num<'a>>,
    #[serde(borrow, default)]
    one_click_leads: Option<Num<'a>>,
    #[serde(borrow, default)]
    video_views: Option<Num<'a>>,
}

#[derive(Deserialize)]
struct DateRange {
    start: Option<Day>,
    end: Option<Day>,
}

#[derive(Deserialize, Clone, Copy)]
struct Day {
    year: u16,
    month: u8,
    day: u8,
}

/// `urn:li:sponsoredCampaign:123` → ("sponsoredCampaign", "123").
fn urn(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix("urn:li:")?;
    let (kind, id) = rest.split_once(':')?;
    (!id.is_empty()).then_some((kind, id))
}

/// Parse one `adAnalytics` response page.
pub fn parse_report(body: &[u8], ctx: &ParseContext) -> Result<RowBatch, PluginError> {
    let response: Response<'_> =
        adpipe_plugin_sdk::json::from_body(body).map_err(|e| explain(body, e))?;
    let Some(elements) = response.elements else {
        if let Some(message) = response.message {
            let code = response
                .service_error_code
                .map(|c| c.text().into_owned())
                .unwrap_or_default();
            return Err(PluginError::new(
                ErrorKind::PlatformError,
                "/message",
                format!(
                    "LinkedIn API error {} {code}: {message}",
                    response.status.map(|s| s.to_string()).unwrap_or_default()
                ),
            ));
        }
        return Err(PluginError::shape(
            "/elements",
            "missing: expected the `elements` array of an adAnalytics response",
        ));
    };
    // LinkedIn returns only the metrics the request's `fields` asked for: one
    // absent from every element of the page was not requested (an error, not
    // a zero); one absent from some elements only is zero there.
    let requested = |f: fn(&Element<'_>) -> bool| elements.iter().any(f);
    let not_requested = [
        ("impressions", requested(|e| e.impressions.is_some())),
        ("clicks", requested(|e| e.clicks.is_some())),
        (
            "costInLocalCurrency",
            requested(|e| e.cost_in_local_currency.is_some() || e.cost_in_usd.is_some()),
        ),
        (
            "externalWebsiteConversions",
            requested(|e| e.external_website_conversions.is_some()),
        ),
        (
            "conversionValueInLocalCurrency",
            requested(|e| e.conversion_value_in_local_currency.is_some()),
        ),
    ]
    .into_iter()
    .find_map(|(field, present)| (!present).then_some(field));
    let usd = ctx
        .currency
        .as_deref()
        .is_some_and(|c| c.eq_ignore_ascii_case("USD"));
    let mut out = BatchBuilder::with_capacity(elements.len());
    for (i, e) in elements.iter().enumerate() {
        let at = |f: &str| format!("/elements/{i}/{f}");
        let range = e
            .date_range
            .as_ref()
            .ok_or_else(|| PluginError::shape(at("dateRange"), "missing"))?;
        let start = range
            .start
            .ok_or_else(|| PluginError::shape(at("dateRange/start"), "missing"))?;
        let date = Date::new(start.year, start.month, start.day)
            .ok_or_else(|| PluginError::value(at("dateRange/start"), "not a calendar date"))?;
        if let Some(end) = range.end {
            if (end.year, end.month, end.day) != (start.year, start.month, start.day) {
                return Err(PluginError::value(
                    at("dateRange/end"),
                    "covers several days; adpipe needs daily rows: request timeGranularity=DAILY",
                ));
            }
        }
        let pivots: Vec<&str> = match (&e.pivot_values, &e.pivot_value) {
            (Some(values), _) => values.iter().map(|v| v.as_ref()).collect(),
            (None, Some(value)) => vec![value.as_ref()],
            (None, None) => {
                return Err(PluginError::shape(
                    at("pivotValues"),
                    "missing: request a CAMPAIGN pivot",
                ))
            }
        };
        let (mut account, mut campaign, mut creative) = (None, None, None);
        for (p, value) in pivots.iter().enumerate() {
            match urn(value) {
                Some(("sponsoredAccount", id)) => account = Some(id),
                Some(("sponsoredCampaign", id)) => campaign = Some(id),
                Some(("sponsoredCreative", id)) => creative = Some(id),
                Some(("sponsoredCampaignGroup", _)) => {}
                Some((kind, _)) => {
                    return Err(PluginError::value(
                        format!("/elements/{i}/pivotValues/{p}"),
                        format!("unsupported pivot `{kind}`; use CAMPAIGN, CREATIVE or ACCOUNT"),
                    ))
                }
                None => {
                    return Err(PluginError::value(
                        format!("/elements/{i}/pivotValues/{p}"),
                        format!("`{value}` is not a LinkedIn URN"),
                    ))
                }
            }
        }
        let campaign = campaign.ok_or_else(|| {
            PluginError::shape(
                at("pivotValues"),
                "no sponsoredCampaign: request pivot=CAMPAIGN, or q=statistics&pivots=List(CAMPAIGN,CREATIVE)",
            )
        })?;
        let account = account.map(str::to_owned).or_else(|| {
            ctx.account_id.as_deref().map(|a| {
                urn(a)
                    .map(|(_, id)| id.to_owned())
                    .unwrap_or_else(|| a.to_owned())
            })
        });
        let account = account.ok_or_else(|| {
            PluginError::new(
                ErrorKind::MissingContext,
                at("pivotValues"),
                "no account: pass ?account_id= or add the ACCOUNT pivot",
            )
        })?;
        if let Some(field) = not_requested {
            return Err(PluginError::shape(
                at(field),
                format!(
                    "missing from every element: the request did not ask for it; add {field} to `fields`"
                ),
            ));
        }
        let count = |v: &Option<Num<'_>>, f: &str| count_at(v.as_ref(), || at(f));
        let micros = |v: &Option<Num<'_>>, f: &str| micros_at(v.as_ref(), || at(f));
        let spend = match (&e.cost_in_local_currency, &e.cost_in_usd) {
            (Some(_), _) | (None, None) => {
                micros(&e.cost_in_local_currency, "costInLocalCurrency")?
            }
            (None, Some(_)) if usd => micros(&e.cost_in_usd, "costInUsd")?,
            (None, Some(_)) => {
                return Err(PluginError::new(
                    ErrorKind::MissingContext,
                    at("costInLocalCurrency"),
                    format!(
                        "missing: the row has only costInUsd and its currency is {}, not USD; \
                         add costInLocalCurrency to `fields`",
                        ctx.currency.as_deref().unwrap_or("unknown")
                    ),
                ))
            }
        };
        let row = Row {
            kind: RowKind::Snapshot,
            account_id: Some(out.intern_repeating(&account, Repeating::Account)),
            campaign_id: Some(out.intern_repeating(campaign, Repeating::Campaign)),
            campaign_name: None,
            ad_group_id: None,
            ad_group_name: None,
            ad_id: creative.map(|c| out.intern(c)),
            ad_name: None,
            breakdown: None,
            date,
            hour: None,
            event_at_ms: None,
            currency: None,
            impressions: count(&e.impressions, "impressions")?,
            clicks: count(&e.clicks, "clicks")?,
            spend_micros: spend,
            conversions_micros: micros(
                &e.external_website_conversions,
                "externalWebsiteConversions",
            )?,
            conversion_value_micros: micros(
                &e.conversion_value_in_local_currency,
                "conversionValueInLocalCurrency",
            )?,
            observed_at_ms: None,
            dedup_key: None,
        };
        let index = out.push(row);
        out.extra(
            index,
            "one_click_leads",
            micros(&e.one_click_leads, "oneClickLeads")?,
        );
        out.extra(index, "video_views", micros(&e.video_views, "videoViews")?);
    }
    let next = response
        .paging
        .and_then(|p| {
            p.links
                .into_iter()
                .find(|l| l.rel.as_deref() == Some("next"))
        })
        .and_then(|l| l.href);
    if let Some(href) = next {
        // A relative link continues on the host that served this page.
        let origin = ctx.option("request.url").and_then(origin_of).unwrap_or(API);
        let url = if href.starts_with("http") {
            href.into_owned()
        } else {
            format!("{origin}{href}")
        };
        out.next_page(HttpRequest {
            method: "GET".into(),
            url,
            query: vec![],
            headers: restli_headers(linkedin_version(&ctx.options)),
            body: None,
            credential: CredentialSlot::Bearer,
        });
    }
    Ok(out.finish())
}

/// `https://host:port/path?q` → `https://host:port`.
fn origin_of(url: &str) -> Option<&str> {
    let start = url.find("://")? + 3;
    Some(match url[start..].find('/') {
        Some(end) => &url[..start + end],
        None => url,
    })
}

fn restli_headers(version: &str) -> Vec<(String, String)> {
    vec![
        ("linkedin-version".into(), version.into()),
        ("x-restli-protocol-version".into(), "2.0.0".into()),
    ]
}

fn explain(body: &[u8], error: serde_json::Error) -> PluginError {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return PluginError::malformed(format!("not valid JSON: {error}"));
    };
    let Some(root) = value.as_object() else {
        return PluginError::shape("", "expected an adAnalytics response object");
    };
    match root.get("elements") {
        Some(Value::Array(elements)) => {
            for (i, e) in elements.iter().enumerate() {
                let Some(fields) = e.as_object() else {
                    return PluginError::shape(format!("/elements/{i}"), "expected an object");
                };
                for (name, v) in fields {
                    let ok = match name.as_str() {
                        "dateRange" => {
                            v.get("start").is_none_or(is_day)
                                && v.get("end").is_none_or(is_day)
                                && v.is_object()
                        }
                        "pivotValues" => {
                            v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
                        }
                        "pivotValue" | "pivot" => v.is_string(),
                        _ => v.is_string() || v.is_number() || v.is_null(),
                    };
                    if !ok {
                        return PluginError::shape(
                            format!("/elements/{i}/{name}"),
                            "unexpected type",
                        );
                    }
                }
            }
            PluginError::shape("", format!("not an adAnalytics response: {error}"))
        }
        Some(_) => PluginError::shape("/elements", "expected an array"),
        None => PluginError::shape("", format!("not an adAnalytics response: {error}")),
    }
}

fn is_day(v: &Value) -> bool {
    ["year", "month", "day"]
        .iter()
        .all(|k| v.get(k).is_some_and(Value::is_u64))
        && v.get("year")
            .and_then(Value::as_u64)
            .is_some_and(|y| y <= u64::from(u16::MAX))
        && v.get("month")
            .and_then(Value::as_u64)
            .is_some_and(|m| m <= 255)
        && v.get("day")
            .and_then(Value::as_u64)
            .is_some_and(|d| d <= 255)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeadNotification<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Option<Text<'a>>,
    #[serde(borrow, default)]
    lead_gen_form_response: Option<Text<'a>>,
    #[serde(default)]
    owner: Option<Value>,
    #[serde(default)]
    associated_entity: Option<Value>,
    #[serde(default)]
    occured_at: Option<i64>,
    #[serde(default)]
    occurred_at: Option<i64>,
    #[serde(borrow, default)]
    lead_action: Option<Text<'a>>,
}

/// Lead notifications: one object, or an array of them.
pub fn parse_webhook(body: &[u8], ctx: &ParseContext) -> Result<RowBatch, PluginError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| PluginError::malformed(format!("not valid JSON: {e}")))?;
    let items: Vec<(String, &Value)> = match &value {
        Value::Array(list) => list
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("/{i}"), v))
            .collect(),
        Value::Object(_) => vec![(String::new(), &value)],
        _ => {
            return Err(PluginError::shape(
                "",
                "expected a lead notification object",
            ))
        }
    };
    let mut out = BatchBuilder::new();
    for (path, item) in items {
        let n = LeadNotification::deserialize(item)
            .map_err(|e| PluginError::shape(path.clone(), e.to_string()))?;
        let kind = n.kind.as_deref().unwrap_or("");
        if kind != "LEAD_ACTION" || n.lead_action.as_deref().is_some_and(|a| a != "CREATED") {
            out.notice(format!("ignored LinkedIn notification type {kind:?}"));
            continue;
        }
        let response = n
            .lead_gen_form_response
            .as_deref()
            .ok_or_else(|| PluginError::shape(format!("{path}/leadGenFormResponse"), "missing"))?;
        let entity = n.associated_entity.as_ref();
        let field = |v: Option<&Value>, key: &str| {
            v.and_then(|e| e.get(key))
                .and_then(Value::as_str)
                .and_then(urn)
                .map(|(_, id)| id.to_owned())
        };
        let creative = field(entity, "sponsoredCreative");
        let campaign = field(entity, "sponsoredCampaign");
        let account =
            field(n.owner.as_ref(), "sponsoredAccount").or_else(|| ctx.account_id.clone());
        if creative.is_none() && campaign.is_none() {
            out.notice(format!(
                "lead {response} names no sponsored creative or campaign (organic): not attributed"
            ));
            continue;
        }
        let at_ms = n
            .occured_at
            .or(n.occurred_at)
            .ok_or_else(|| PluginError::shape(format!("{path}/occuredAt"), "missing"))?;
        let date = Date::from_days_since_epoch(at_ms.div_euclid(86_400_000))
            .ok_or_else(|| PluginError::value(format!("{path}/occuredAt"), "out of range"))?;
        let row = Row {
            kind: RowKind::Delta,
            account_id: account.as_deref().map(|a| out.intern(a)),
            campaign_id: campaign.as_deref().map(|c| out.intern(c)),
            campaign_name: None,
            ad_group_id: None,
            ad_group_name: None,
            ad_id: creative.as_deref().map(|c| out.intern(c)),
            ad_name: None,
            breakdown: None,
            date,
            hour: None,
            // Filed under the lead's day in the pipeline's time zone.
            event_at_ms: Some(at_ms),
            currency: None,
            impressions: 0,
            clicks: 0,
            spend_micros: 0,
            conversions_micros: 0,
            conversion_value_micros: 0,
            observed_at_ms: Some(at_ms),
            dedup_key: Some(out.intern(&format!("lead:{response}"))),
        };
        let index = out.push(row);
        out.extra(index, "leads", 1_000_000);
    }
    Ok(out.finish())
}

/// One `adAnalytics?q=statistics` request per account, pivoted by campaign and creative.
pub fn plan_pull(request: &PullRequest) -> Result<Vec<HttpRequest>, PluginError> {
    let account = urn(&request.account_id)
        .map(|(_, id)| id)
        .unwrap_or(&request.account_id);
    if account.is_empty() || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PluginError::value(
            "/account_id",
            format!("`{}` is not a LinkedIn ad account id", request.account_id),
        ));
    }
    if request.to < request.from {
        return Err(PluginError::value(
            "/until",
            "the window ends before it starts",
        ));
    }
    let (f, t) = (request.from, request.to);
    let base = request
        .base_url
        .as_deref()
        .unwrap_or(API)
        .trim_end_matches('/');
    Ok(vec![HttpRequest {
        method: "GET".into(),
        url: format!("{base}/rest/adAnalytics"),
        query: vec![
            ("q".into(), "statistics".into()),
            ("pivots".into(), "List(CAMPAIGN,CREATIVE)".into()),
            ("timeGranularity".into(), "DAILY".into()),
            (
                "dateRange".into(),
                format!("(start:(year:{},month:{},day:{}),end:(year:{},month:{},day:{}))", f.year, f.month, f.day, t.year, t.month, t.day),
            ),
            ("accounts".into(), format!("List(urn%3Ali%3AsponsoredAccount%3A{account})")),
            (
                "fields".into(),
                "dateRange,pivotValues,impressions,clicks,costInLocalCurrency,externalWebsiteConversions,conversionValueInLocalCurrency".into(),
            ),
        ],
        headers: restli_headers(linkedin_version(&request.options)),
        body: None,
        credential: CredentialSlot::Bearer,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ParseContext {
        ParseContext {
            account_id: Some("urn:li:sponsoredAccount:509".into()),
            ..Default::default()
        }
    }

    #[test]
    fn statistics_rows_map_campaign_and_creative() {
        let body = br#"{"elements":[{"dateRange":{"start":{"year":2026,"month":11,"day":1},"end":{"year":2026,"month":11,"day":1}},
            "pivotValues":["urn:li:sponsoredCampaign:111","urn:li:sponsoredCreative:222"],"impressions":1000,"clicks":25,
            "costInLocalCurrency":"12.5","costInUsd":"13.2","externalWebsiteConversions":2,"conversionValueInLocalCurrency":"80.0"}]}"#;
        let b = parse_report(body, &ctx()).expect("parses");
        let r = &b.rows[0];
        assert_eq!(
            (b.str(r.campaign_id.expect("c")), b.str(r.ad_id.expect("a"))),
            ("111", "222")
        );
        assert_eq!(b.str(r.account_id.expect("account")), "509");
        assert_eq!(
            (
                r.spend_micros,
                r.conversions_micros,
                r.conversion_value_micros
            ),
            (12_500_000, 2_000_000, 80_000_000)
        );
        assert_eq!(r.currency, None, "LinkedIn rows name no currency");
    }

    #[test]
    fn rejections_name_their_path() {
        let e = parse_report(br#"{"elements":[{"dateRange":{"start":{"year":2026,"month":11,"day":1},"end":{"year":2026,"month":11,"day":30}},"pivotValues":["urn:li:sponsoredCampaign:1"]}]}"#, &ctx()).expect_err("ALL range");
        assert_eq!(e.path, "/elements/0/dateRange/end");
        let e = parse_report(br#"{"elements":[{"dateRange":{"start":{"year":2026,"month":11,"day":1}},"pivotValues":["urn:li:sponsoredCreative:1"]}]}"#, &ctx()).expect_err("no campaign");
        assert_eq!(e.path, "/elements/0/pivotValues");
        let e = parse_report(br#"{"elements":[{"dateRange":{"start":{"year":2026,"month":11,"day":1}},"pivotValues":["urn:li:sponsoredCampaign:1"],"impressions":1,"clicks":0,"costInLocalCurrency":"abc","externalWebsiteConversions":0,"conversionValueInLocalCurrency":"0"}]}"#, &ctx()).expect_err("bad cost");
        assert_eq!(e.path, "/elements/0/costInLocalCurrency");
        let e = parse_report(br#"{"elements":[{"dateRange":{"start":{"year":2026,"month":11,"day":1}},"pivotValues":["urn:li:sponsoredCampaign:1"]}]}"#, &ParseContext::default()).expect_err("no account");
        assert_eq!(e.kind, ErrorKind::MissingContext);
        let e = parse_report(br#"{"elements":[{"dateRange":"yesterday"}]}"#, &ctx())
            .expect_err("shape");
        assert_eq!(e.path, "/elements/0/dateRange");
        let e = parse_report(br#"{"status":401,"serviceErrorCode":65600,"code":"INVALID_ACCESS_TOKEN","message":"Invalid access token"}"#, &ctx()).expect_err("error");
        assert_eq!(e.kind, ErrorKind::PlatformError);
    }

    #[test]
    fn challenge_and_pull_plan() {
        let uuid = "890e4665-4dfe-4ab1-b689-ed553bceeed0";
        assert_eq!(
            LinkedIn::handshake(&[("challengeCode".into(), uuid.into())]),
            HandshakePlan::HmacChallenge(uuid.into())
        );
        for code in [
            "abc",
            "{\"type\":\"LEAD_ACTION\"}",
            "hmacsha256={}",
            "890e4665-4dfe-4ab1-b689-ed553bceeed0x",
            "890e4665-4dfe-4ab1-b689ed553bceeed0",
            "890e4665-4dfe-4ab1-b689-ed553bceeedg",
            "{890e4665-4dfe-4ab1-b689-ed553bceeed0}",
            "890e46654dfe4ab1b689ed553bceeed0",
        ] {
            assert!(
                matches!(
                    LinkedIn::handshake(&[("challengeCode".into(), code.into())]),
                    HandshakePlan::Reject(_)
                ),
                "{code}"
            );
        }
        assert!(matches!(LinkedIn::handshake(&[]), HandshakePlan::Reject(_)));
        let plan = plan_pull(&PullRequest {
            account_id: "509".into(),
            from: Date::new(2026, 11, 1).expect("d"),
            to: Date::new(2026, 11, 14).expect("d"),
            base_url: None,
            options: vec![],
        })
        .expect("plan");
        assert_eq!(plan[0].url, "https://api.linkedin.com/rest/adAnalytics");
        // Rest.li 2.0 as LinkedIn documents it (and established connectors
        // send it): syntax raw, the URN inside the list encoded once.
        for pair in [
            ("q", "statistics"),
            ("pivots", "List(CAMPAIGN,CREATIVE)"),
            ("timeGranularity", "DAILY"),
            (
                "dateRange",
                "(start:(year:2026,month:11,day:1),end:(year:2026,month:11,day:14))",
            ),
            ("accounts", "List(urn%3Ali%3AsponsoredAccount%3A509)"),
        ] {
            assert!(
                plan[0].query.contains(&(pair.0.into(), pair.1.into())),
                "{pair:?} in {:?}",
                plan[0].query
            );
        }
    }
}
