//! The TikTok Business API adapter for adpipe.
//!
//! Reports: `report/integrated/get` (v1.3) responses. The envelope's `code`
//! must be 0 (anything else is the platform's error, reported as such);
//! `data.list[]` holds `dimensions` (`campaign_id` / `adgroup_id` / `ad_id`,
//! `stat_time_day` `"YYYY-MM-DD HH:MM:SS"` or `stat_time_hour`) and `metrics`
//! whose numbers arrive as strings. At the ad level, `campaign_id`,
//! `adgroup_id`, `campaign_name` and `currency` may be requested as metrics.
//! `data.page_info` drives paging.
//!
//! TikTok returns exactly the metrics a request asked for, and `"-"` for one
//! it cannot compute (`null` through some connectors): a counted metric that
//! is `"-"` or `null` is zero, one missing from the row was not requested and
//! is refused naming it; metrics the adapter does not count are ignored.
//!
//! Options: `conversion_metric` (default `conversion`), `conversion_value_metric`
//! (default `total_complete_payment_rate`, TikTok's purchase value; `none`
//! for either counts nothing),
//! `extra_metrics` (default `complete_payment,result,video_play_actions,likes`).
//!
//! Webhooks: lead events become `leads` deltas keyed by `lead_id`; the host
//! checks `TikTok-Signature` (`t=…,s=…`) and rejects stale timestamps.

use adpipe_plugin_sdk::num::{count_at, micros_at, Fields, Num};
use adpipe_plugin_sdk::{
    Adapter, AdapterInfo, ApiVersion, BatchBuilder, CredentialSlot, Date, ErrorKind, HttpRequest,
    OptionSpec, OptionType, ParseContext, PluginError, PullRequest, Repeating, Row, RowBatch,
    RowKind, SignatureScheme, WebhookRequest,
};
use serde::Deserialize;
use serde_json::{Map, Value};

pub const API: &str = "https://business-api.tiktok.com";
const DEFAULT_EXTRAS: &str = "complete_payment,result,video_play_actions,likes";
/// Business API versions, newest first (v1.2 was retired 2023-08-15; v1.3 is
/// the only live one and has no announced end).
pub const API_VERSIONS: &[(&str, Option<&str>)] = &[("v1.3", None)];
/// Dimensions that identify the entity or the time bucket; any other
/// dimension (`country_code`, `gender`, `age`, `platform`...) is a breakdown.
const KEY_DIMENSIONS: &[&str] = &[
    "advertiser_id",
    "campaign_id",
    "adgroup_id",
    "ad_id",
    "stat_time_day",
    "stat_time_hour",
];

/// The TikTok adapter, as the component exports it.
pub struct TikTok;

impl Adapter for TikTok {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            name: "tiktok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            platform: "tiktok".into(),
            signature: SignatureScheme::HmacSha256Timestamped {
                header: "tiktok-signature".into(),
                max_age_seconds: 300,
            },
            allowed_hosts: vec!["business-api.tiktok.com".into()],
            default_lookback_days: 7,
            options: vec![
                OptionSpec::new(
                    "conversion_metric",
                    OptionType::String,
                    "report metric counted as conversions (`none`: count nothing)",
                )
                .default_value("conversion"),
                OptionSpec::new(
                    "conversion_value_metric",
                    OptionType::String,
                    "report metric counted as conversion value (`none`: count nothing)",
                )
                .default_value("total_complete_payment_rate"),
                OptionSpec::new(
                    "extra_metrics",
                    OptionType::List,
                    "report metrics kept as extra metrics under their own names",
                )
                .default_value(DEFAULT_EXTRAS),
            ],
            api_versions: API_VERSIONS
                .iter()
                .map(|(name, sunset)| ApiVersion::new(name, *sunset))
                .collect(),
            extra_metrics: std::iter::once("leads")
                .chain(DEFAULT_EXTRAS.split(','))
                .map(str::to_owned)
                .collect(),
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

adpipe_plugin_sdk::export_adapter!(TikTok);

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    code: Option<i64>,
    #[serde(borrow, default)]
    message: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    request_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<Data<'a>>,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(borrow, default)]
    list: Option<Vec<Entry<'a>>>,
    #[serde(default)]
    page_info: Option<PageInfo>,
}

#[derive(Deserialize)]
struct PageInfo {
    #[serde(default)]
    page: Option<u32>,
    #[serde(default)]
    total_page: Option<u32>,
}

#[derive(Deserialize, Default)]
struct Entry<'a> {
    #[serde(borrow, default)]
    dimensions: Option<Fields<'a, Num<'a>>>,
    #[serde(borrow, default)]
    metrics: Option<Fields<'a, Cell<'a>>>,
}

/// One value of `metrics`. TikTok answers `"-"` for a metric it cannot
/// compute, and some connectors turn that into `null` (Airbyte's
/// `TransformEmptyMetrics`): both are [`Cell::Empty`]. Any other JSON value is
/// kept as [`Cell::Other`] and only refused if the adapter reads that metric,
/// so an unused metric never rejects a page.
enum Cell<'a> {
    Num(Num<'a>),
    Empty,
    Other,
}

impl<'a> Cell<'a> {
    fn num(&self) -> Option<&Num<'a>> {
        match self {
            Cell::Num(n) => Some(n),
            Cell::Empty | Cell::Other => None,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Cell<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
        use std::borrow::Cow;
        struct CellVisitor;
        impl<'de> Visitor<'de> for CellVisitor {
            type Value = Cell<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a metric value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Cell<'de>, E> {
                Ok(text_cell(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Cell<'de>, E> {
                Ok(text_cell(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Cell<'de>, E> {
                Ok(text_cell(Cow::Owned(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Cell<'de>, E> {
                Ok(Cell::Num(Num::Int(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Cell<'de>, E> {
                Ok(Cell::Num(Num::UInt(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Cell<'de>, E> {
                Ok(Cell::Num(Num::Float(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Cell<'de>, E> {
                Ok(Cell::Empty)
            }
            fn visit_none<E: de::Error>(self) -> Result<Cell<'de>, E> {
                Ok(Cell::Empty)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Cell<'de>, E> {
                Ok(Cell::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Cell<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Cell::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Cell<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Cell::Other)
            }
        }
        deserializer.deserialize_any(CellVisitor)
    }
}

fn text_cell(text: std::borrow::Cow<'_, str>) -> Cell<'_> {
    if text.trim() == "-" {
        Cell::Empty
    } else {
        Cell::Num(Num::Text(text))
    }
}

/// Whether an option names a metric to count; `none` (or empty) counts nothing.
fn counted(option: &str) -> Option<&str> {
    let name = option.trim();
    (!name.is_empty() && name != "none").then_some(name)
}

/// Parse one report page.
pub fn parse_report(body: &[u8], ctx: &ParseContext) -> Result<RowBatch, PluginError> {
    let envelope: Envelope<'_> =
        adpipe_plugin_sdk::json::from_body(body).map_err(|e| explain(body, e))?;
    match envelope.code {
        Some(0) => {}
        Some(code) => {
            return Err(PluginError::new(
                ErrorKind::PlatformError,
                "/code",
                format!(
                    "TikTok API error {code}: {} (request_id {})",
                    envelope.message.as_deref().unwrap_or("(no message)"),
                    envelope.request_id.as_deref().unwrap_or("?")
                ),
            ))
        }
        None => {
            return Err(PluginError::shape(
                "/code",
                "missing: expected the code/message/request_id/data envelope",
            ))
        }
    }
    let data = envelope
        .data
        .ok_or_else(|| PluginError::shape("/data", "missing"))?;
    let list = data
        .list
        .ok_or_else(|| PluginError::shape("/data/list", "missing"))?;
    let conversion = counted(ctx.option("conversion_metric").unwrap_or("conversion"));
    let value_metric = counted(
        ctx.option("conversion_value_metric")
            .unwrap_or("total_complete_payment_rate"),
    );
    let extras: Vec<&str> = ctx
        .option("extra_metrics")
        .unwrap_or(DEFAULT_EXTRAS)
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let mut out = BatchBuilder::with_capacity(list.len());
    let empty = Fields::default();
    for (i, entry) in list.iter().enumerate() {
        let dims = entry
            .dimensions
            .as_ref()
            .ok_or_else(|| PluginError::shape(format!("/data/list/{i}/dimensions"), "missing"))?;
        let metrics = entry.metrics.as_ref().unwrap_or(&empty);
        let dim_at = |f: &str| format!("/data/list/{i}/dimensions/{f}");
        let met_at = |f: &str| format!("/data/list/{i}/metrics/{f}");
        let id = |key: &str| {
            dims.get(key)
                .or_else(|| metrics.get(key).and_then(Cell::num))
                .map(|v| v.text())
                .filter(|s| !s.is_empty() && s.as_ref() != "-")
        };
        let campaign = id("campaign_id").ok_or_else(|| {
            PluginError::shape(dim_at("campaign_id"), "missing: use the campaign_id dimension, or request campaign_id as a metric at the ad level")
        })?;
        let (date, hour) = match (dims.get("stat_time_day"), dims.get("stat_time_hour")) {
            (Some(day), _) => {
                let text = day.text();
                (
                    Date::try_parse(&text)
                        .map_err(|e| PluginError::value(dim_at("stat_time_day"), e.to_string()))?,
                    None,
                )
            }
            (None, Some(hour)) => {
                let text = hour.text();
                let date = Date::try_parse(&text)
                    .map_err(|e| PluginError::value(dim_at("stat_time_hour"), e.to_string()))?;
                let h = text
                    .get(11..13)
                    .and_then(|h| h.parse::<u8>().ok())
                    .filter(|h| *h < 24);
                let h = h.ok_or_else(|| {
                    PluginError::value(dim_at("stat_time_hour"), format!("`{text}` has no hour"))
                })?;
                (date, Some(h))
            }
            (None, None) => {
                return Err(PluginError::shape(
                    dim_at("stat_time_day"),
                    "missing: use the stat_time_day or stat_time_hour dimension",
                ))
            }
        };
        let account = id("advertiser_id")
            .or_else(|| ctx.account_id.as_deref().map(std::borrow::Cow::Borrowed))
            .ok_or_else(|| {
                PluginError::new(
                    ErrorKind::MissingContext,
                    dim_at("advertiser_id"),
                    "no advertiser: pass ?account_id= or request advertiser_id",
                )
            })?;
        // A metric TikTok was asked for is in every row ("-" or null when it
        // cannot be computed: zero); one it is not in was not requested.
        let requested = |key: &str| -> Result<Option<&Num<'_>>, PluginError> {
            match metrics.get(key) {
                Some(Cell::Num(n)) => Ok(Some(n)),
                Some(Cell::Empty) => Ok(None),
                Some(Cell::Other) => Err(PluginError::value(
                    met_at(key),
                    "expected a number, a numeric string, \"-\" or null",
                )),
                None => Err(PluginError::shape(
                    met_at(key),
                    format!("missing: the report was not asked for `{key}`; add it to `metrics`"),
                )),
            }
        };
        let count = |key: &str| count_at(requested(key)?, || met_at(key));
        let micros = |key: &str| micros_at(requested(key)?, || met_at(key));
        let counted_micros = |key: Option<&str>| key.map_or(Ok(0), micros);
        let text = |key: &str| metrics.get(key).and_then(Cell::num).map(|n| n.text());
        let name = text("campaign_name");
        let ad_group_name = text("adgroup_name");
        let ad_name = text("ad_name");
        let currency = text("currency");
        let breakdown = adpipe_plugin_sdk::breakdown_key(
            dims.iter()
                .filter(|(k, _)| !KEY_DIMENSIONS.contains(k))
                .map(|(k, v)| (k, v.text()))
                .collect::<Vec<_>>()
                .iter()
                .map(|(k, v)| (*k, v.as_ref())),
        );
        let row = Row {
            kind: RowKind::Snapshot,
            account_id: Some(out.intern_repeating(&account, Repeating::Account)),
            campaign_id: Some(out.intern_repeating(&campaign, Repeating::Campaign)),
            campaign_name: out.intern_repeating_opt(name.as_deref(), Repeating::CampaignName),
            ad_group_id: id("adgroup_id").map(|g| out.intern_repeating(&g, Repeating::AdGroup)),
            ad_group_name: out
                .intern_repeating_opt(ad_group_name.as_deref(), Repeating::AdGroupName),
            ad_id: id("ad_id").map(|a| out.intern(&a)),
            ad_name: out.intern_opt(ad_name.as_deref()),
            breakdown: breakdown.map(|key| out.intern(&key)),
            date,
            hour,
            event_at_ms: None,
            currency: out.intern_repeating_opt(currency.as_deref(), Repeating::Currency),
            impressions: count("impressions")?,
            clicks: count("clicks")?,
            spend_micros: micros("spend")?,
            conversions_micros: counted_micros(conversion)?,
            conversion_value_micros: counted_micros(value_metric)?,
            observed_at_ms: None,
            dedup_key: None,
        };
        let index = out.push(row);
        for extra in &extras {
            // Extra metrics are kept when the report carries them.
            if let Some(value) = metrics.get(extra).and_then(Cell::num) {
                out.extra(index, extra, micros_at(Some(value), || met_at(extra))?);
            } else if let Some(Cell::Other) = metrics.get(extra) {
                return Err(PluginError::value(
                    met_at(extra),
                    "expected a number, a numeric string, \"-\" or null",
                ));
            }
        }
    }
    if let Some(PageInfo {
        page: Some(page),
        total_page: Some(total),
    }) = data.page_info
    {
        if page < total {
            match ctx.option("request.url") {
                Some(url) => out.next_page(HttpRequest {
                    method: "GET".into(),
                    url: with_page(url, page + 1),
                    query: vec![],
                    headers: vec![],
                    body: None,
                    credential: CredentialSlot::Header("Access-Token".into()),
                }),
                None => out.notice(format!(
                    "page {page} of {total}: push the following pages too"
                )),
            }
        }
    }
    Ok(out.finish())
}

/// `url` with its `page` query parameter set to `page`.
pub fn with_page(url: &str, page: u32) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("page="))
        .map(str::to_owned)
        .collect();
    params.push(format!("page={page}"));
    format!("{base}?{}", params.join("&"))
}

fn explain(body: &[u8], error: serde_json::Error) -> PluginError {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return PluginError::malformed(format!("not valid JSON: {error}"));
    };
    let Some(root) = value.as_object() else {
        return PluginError::shape("", "expected the code/message/request_id/data envelope");
    };
    if root.get("code").is_some_and(|c| !c.is_i64()) {
        return PluginError::shape("/code", "expected an integer");
    }
    if let Some(list) = root.get("data").and_then(|d| d.get("list")) {
        let Some(list) = list.as_array() else {
            return PluginError::shape("/data/list", "expected an array");
        };
        for (i, entry) in list.iter().enumerate() {
            for part in ["dimensions", "metrics"] {
                match entry.get(part) {
                    None | Some(Value::Null) => {}
                    Some(Value::Object(fields)) => {
                        // Any metric value is accepted (checked when read).
                        if let Some((k, _)) = fields.iter().find(|(_, v)| {
                            part == "dimensions" && !(v.is_string() || v.is_number())
                        }) {
                            return PluginError::shape(
                                format!("/data/list/{i}/{part}/{k}"),
                                "expected a string or number",
                            );
                        }
                    }
                    Some(_) => {
                        return PluginError::shape(
                            format!("/data/list/{i}/{part}"),
                            "expected an object",
                        )
                    }
                }
            }
        }
    }
    PluginError::shape("", format!("not a report/integrated/get response: {error}"))
}

/// Lead events: the lead object itself, or TikTok's event envelope whose
/// `content` is the lead as a JSON string. One event or an array of them.
pub fn parse_webhook(body: &[u8], ctx: &ParseContext) -> Result<RowBatch, PluginError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| PluginError::malformed(format!("not valid JSON: {e}")))?;
    let events: Vec<(String, &Value)> = match &value {
        Value::Array(list) => list
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("/{i}"), v))
            .collect(),
        Value::Object(_) => vec![(String::new(), &value)],
        _ => return Err(PluginError::shape("", "expected a lead event object")),
    };
    let mut out = BatchBuilder::new();
    for (path, event) in events {
        let Some(object) = event.as_object() else {
            return Err(PluginError::shape(path, "expected an object"));
        };
        let content: Map<String, Value>;
        let lead = match object.get("content") {
            Some(Value::String(text)) => {
                content = serde_json::from_str(text).map_err(|e| {
                    PluginError::shape(format!("{path}/content"), format!("not a JSON object: {e}"))
                })?;
                &content
            }
            Some(Value::Object(inner)) => inner,
            _ => object,
        };
        let text = |key: &str| match lead.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let Some(lead_id) = text("lead_id") else {
            let kind = object.get("event").and_then(Value::as_str).unwrap_or("?");
            out.notice(format!("ignored TikTok event {kind:?} without lead_id"));
            continue;
        };
        let (ad, campaign) = (text("ad_id"), text("campaign_id"));
        if ad.is_none() && campaign.is_none() {
            out.notice(format!(
                "lead {lead_id} names no ad or campaign: not attributed"
            ));
            continue;
        }
        let created = lead
            .get("create_time")
            .or_else(|| object.get("create_time"))
            .and_then(|t| {
                t.as_i64()
                    .or_else(|| t.as_str().and_then(|s| s.parse().ok()))
            })
            .ok_or_else(|| PluginError::shape(format!("{path}/create_time"), "missing"))?;
        let date = Date::from_days_since_epoch(created.div_euclid(86_400))
            .ok_or_else(|| PluginError::value(format!("{path}/create_time"), "out of range"))?;
        let account = text("advertiser_id").or_else(|| ctx.account_id.clone());
        let row = Row {
            kind: RowKind::Delta,
            account_id: account.as_deref().map(|a| out.intern(a)),
            campaign_id: campaign.as_deref().map(|c| out.intern(c)),
            campaign_name: None,
            ad_group_id: text("adgroup_id").as_deref().map(|g| out.intern(g)),
            ad_group_name: None,
            ad_id: ad.as_deref().map(|a| out.intern(a)),
            ad_name: None,
            breakdown: None,
            date,
            hour: None,
            // Filed under the lead's day in the pipeline's time zone.
            event_at_ms: Some(created.saturating_mul(1000)),
            currency: None,
            impressions: 0,
            clicks: 0,
            spend_micros: 0,
            conversions_micros: 0,
            conversion_value_micros: 0,
            observed_at_ms: Some(created.saturating_mul(1000)),
            dedup_key: Some(out.intern(&format!("lead:{lead_id}"))),
        };
        let index = out.push(row);
        out.extra(index, "leads", 1_000_000);
    }
    Ok(out.finish())
}

/// One ad-level daily report request per advertiser, first page.
pub fn plan_pull(request: &PullRequest) -> Result<Vec<HttpRequest>, PluginError> {
    if request.account_id.is_empty() || !request.account_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PluginError::value(
            "/account_id",
            format!("`{}` is not a TikTok advertiser id", request.account_id),
        ));
    }
    if request.to < request.from {
        return Err(PluginError::value(
            "/until",
            "the window ends before it starts",
        ));
    }
    if request.to.days_since_epoch() - request.from.days_since_epoch() >= 30 {
        return Err(PluginError::value(
            "/until",
            "TikTok daily reports span at most 30 days",
        ));
    }
    let version =
        adpipe_plugin_sdk::option(&request.options, "api_version").unwrap_or(API_VERSIONS[0].0);
    let base = request
        .base_url
        .as_deref()
        .unwrap_or(API)
        .trim_end_matches('/');
    Ok(vec![HttpRequest {
        method: "GET".into(),
        url: format!("{base}/open_api/{version}/report/integrated/get/"),
        query: vec![
            ("advertiser_id".into(), request.account_id.clone()),
            ("report_type".into(), "BASIC".into()),
            ("data_level".into(), "AUCTION_AD".into()),
            ("dimensions".into(), r#"["ad_id","stat_time_day"]"#.into()),
            (
                "metrics".into(),
                r#"["campaign_id","adgroup_id","campaign_name","adgroup_name","ad_name","currency","spend","impressions","clicks","conversion","total_complete_payment_rate","complete_payment"]"#.into(),
            ),
            ("start_date".into(), request.from.to_string()),
            ("end_date".into(), request.to.to_string()),
            ("page".into(), "1".into()),
            ("page_size".into(), "1000".into()),
        ],
        headers: vec![],
        body: None,
        credential: CredentialSlot::Header("Access-Token".into()),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ParseContext {
        ParseContext {
            account_id: Some("7012345678901234567".into()),
            ..Default::default()
        }
    }

    #[test]
    fn strings_become_exact_numbers() {
        let body = br#"{"code":0,"message":"OK","request_id":"r","data":{"page_info":{"page":1,"page_size":10,"total_number":1,"total_page":1},
            "list":[{"dimensions":{"campaign_id":"1780001","stat_time_day":"2026-11-01 00:00:00"},
            "metrics":{"spend":"12.50","impressions":"1000","clicks":"25","conversion":"2","total_complete_payment_rate":"80.00","complete_payment":"2"}}]}}"#;
        let b = parse_report(body, &ctx()).expect("parses");
        let r = &b.rows[0];
        assert_eq!(
            (r.impressions, r.clicks, r.spend_micros),
            (1000, 25, 12_500_000)
        );
        assert_eq!(
            (r.conversions_micros, r.conversion_value_micros),
            (2_000_000, 80_000_000)
        );
        assert_eq!(r.date.to_string(), "2026-11-01");
        assert_eq!(
            b.extras_of(0).collect::<Vec<_>>(),
            vec![("complete_payment", 2_000_000)]
        );
        assert!(b.next_page.is_none() && b.notices.is_empty());
    }

    #[test]
    fn a_non_zero_code_is_the_platforms_error() {
        let e = parse_report(
            br#"{"code":40100,"message":"Too many requests","request_id":"abc","data":{}}"#,
            &ctx(),
        )
        .expect_err("error");
        assert_eq!(e.kind, ErrorKind::PlatformError);
        assert_eq!(
            e.message,
            "TikTok API error 40100: Too many requests (request_id abc)"
        );
    }

    #[test]
    fn paging_uses_the_request_url_when_the_host_gives_it() {
        let body = br#"{"code":0,"message":"OK","request_id":"r","data":{"page_info":{"page":1,"total_page":3},"list":[]}}"#;
        let mut c = ctx();
        c.options.push(("request.url".into(), "http://127.0.0.1:1/open_api/v1.3/report/integrated/get/?advertiser_id=1&page=1&page_size=2".into()));
        let b = parse_report(body, &c).expect("parses");
        assert_eq!(b.next_page.expect("next").url, "http://127.0.0.1:1/open_api/v1.3/report/integrated/get/?advertiser_id=1&page_size=2&page=2");
        let b = parse_report(body, &ctx()).expect("parses");
        assert!(b.notices[0].contains("page 1 of 3"));
    }

    #[test]
    fn errors_name_their_path() {
        let bad = |body: &str| parse_report(body.as_bytes(), &ctx()).expect_err("rejected");
        let e = bad(
            r#"{"code":0,"data":{"list":[{"dimensions":{"stat_time_day":"2026-11-01 00:00:00"},"metrics":{}}]}}"#,
        );
        assert_eq!(e.path, "/data/list/0/dimensions/campaign_id");
        let e = bad(
            r#"{"code":0,"data":{"list":[{"dimensions":{"campaign_id":"1","stat_time_day":"2026-11-01 00:00:00"},"metrics":{"impressions":"1","clicks":"0","spend":"1,5","conversion":"0","total_complete_payment_rate":"0"}}]}}"#,
        );
        assert_eq!(e.path, "/data/list/0/metrics/spend");
        let e = bad(r#"{"code":0,"data":{"list":[{"dimensions":{"campaign_id":{"x":1}}}]}}"#);
        assert_eq!(e.path, "/data/list/0/dimensions/campaign_id");
        let e = bad(r#"{"message":"OK"}"#);
        assert_eq!(e.path, "/code");
    }
}
