//! The Pinterest Ads adapter for adpipe (Pinterest API v5).
//!
//! Reports: the synchronous analytics endpoints
//! `GET /v5/ad_accounts/{ad_account_id}/campaigns/analytics` (and
//! `/ad_groups/analytics`, `/ads/analytics`) at `granularity=DAY`. Their
//! answer is a JSON array of flat objects keyed by upper-case column names
//! (Pinterest's OpenAPI description, `CampaignsAnalyticsResponse`): `DATE`
//! (`YYYY-MM-DD`, the reporting day), the entity's `CAMPAIGN_ID` /
//! `AD_GROUP_ID` / `AD_ID` and whatever `columns` asked for, numbers often as
//! floats (`"SPEND_IN_MICRO_DOLLAR": 38250000.0`). A row counts:
//!
//! - `impressions` = `IMPRESSION_1` (paid pin impressions), `clicks` =
//!   `CLICKTHROUGH_1` (paid pin clicks), whole counts (`1200.0` is 1200);
//! - `spend` = `SPEND_IN_MICRO_DOLLAR`, already micros of the ad account's
//!   currency (Pinterest: "MICRO_DOLLARS ... microunits of the advertiser's
//!   currency"); `SPEND_IN_DOLLAR` stands in when only it was requested;
//! - `conversions` = the `conversion_metric` option (default
//!   `TOTAL_CONVERSIONS`, every conversion event), `conversion_value` = the
//!   `conversion_value_metric` option (default
//!   `TOTAL_CHECKOUT_VALUE_IN_MICRO_DOLLAR`, checkout value); a column named
//!   `*_IN_MICRO_DOLLAR` is read as micros, any other as a decimal; `none`
//!   counts nothing;
//! - extra metrics `outbound_clicks` (`OUTBOUND_CLICK_1`) and `saves`
//!   (`REPIN_1`).
//!
//! Pinterest leaves out a column that has no value ("If a column has no
//! value, it may not be returned"), so an absent or `null` metric is zero.
//! `CAMPAIGN_ID` is required in every row (request it as a column at the ad
//! group and ad levels). The account is the row's `AD_ACCOUNT_ID` (or
//! `ADVERTISER_ID`), else the request's or pipeline's `account_id`. Rows
//! carry no currency: every amount is in the ad account's currency, which the
//! pipeline (`currency`) or the request (`?currency=`) must name, or the page
//! is refused as missing context. Only daily rows are read: a `DATE` with a
//! time of day, or a pulled page whose `granularity` is not `DAY`, is refused
//! as unsupported (Pinterest documents `DATE` as a date at every granularity,
//! so hours, weeks and months could not be told apart from days).
//!
//! Errors: Pinterest answers `{"code": <n>, "message": "..."}` (8: rate
//! limited, 2: authentication failed, 29: not permitted, 400: invalid
//! parameters); such a body is refused as the platform's error, never read as
//! data.
//!
//! Pulls: the analytics endpoints require the entity ids (`campaign_ids`,
//! 1 to 250 of them), so a pull walks the account's entities first:
//!
//! 1. `GET /v5/ad_accounts/{id}/{campaigns|ad_groups|ads}?entity_statuses=…&page_size=250`
//!    (the `level` option; archived entities included by default, since they
//!    may have spent in the window). Its parse yields no rows; its next page
//!    is
//! 2. `GET /v5/ad_accounts/{id}/{level}/analytics?start_date&end_date&campaign_ids=…&columns=…&granularity=DAY`
//!    for the ids of that listing page; its parse yields the rows, and, when
//!    the listing had a `bookmark`, its next page is the following listing
//!    page, and so on.
//!
//! A page's parse sees only its own URL (`request.url`), so each planned URL
//! carries what the next step needs in its fragment, which HTTP clients never
//! send: the window (`#start_date=…&end_date=…`) on listing pages, the
//! listing's `bookmark` on analytics pages. Arrays go out as the OpenAPI
//! description says: `columns` comma-separated (`explode: false`), ids and
//! statuses as repeated keys (form, exploded). Bearer token; API v5.

use adpipe_plugin_sdk::num::{count_at, micros_at, whole_micros_at, Fields, Num, Text};
use adpipe_plugin_sdk::{
    Adapter, AdapterInfo, ApiVersion, BatchBuilder, CredentialSlot, Date, ErrorKind, HttpRequest,
    OptionSpec, OptionType, ParseContext, PluginError, PullRequest, Row, RowBatch, RowKind,
    SignatureScheme,
};
use serde::Deserialize;
use std::borrow::Cow;

pub const API: &str = "https://api.pinterest.com";
/// API versions, newest first: v5 is the only one served (v3 and v4 were
/// retired), with no announced end.
pub const API_VERSIONS: &[(&str, Option<&str>)] = &[("v5", None)];
/// Most ids per analytics request, and the largest listing `page_size`.
pub const MAX_IDS: usize = 250;
/// Longest window of a daily analytics request, in days.
pub const MAX_WINDOW_DAYS: i64 = 90;
pub const DEFAULT_CONVERSIONS: &str = "TOTAL_CONVERSIONS";
pub const DEFAULT_CONVERSION_VALUE: &str = "TOTAL_CHECKOUT_VALUE_IN_MICRO_DOLLAR";
pub const DEFAULT_STATUSES: &str = "ACTIVE,PAUSED,ARCHIVED";
const STATUSES: &[&str] = &["ACTIVE", "PAUSED", "ARCHIVED", "DRAFT", "DELETED_DRAFT"];
/// Extra metrics: Pinterest column → adpipe name.
pub const EXTRAS: &[(&str, &str)] = &[
    ("OUTBOUND_CLICK_1", "outbound_clicks"),
    ("REPIN_1", "saves"),
];

/// The Pinterest adapter, as the component exports it.
pub struct Pinterest;

impl Adapter for Pinterest {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            name: "pinterest".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            platform: "pinterest".into(),
            // Pinterest sends no metric webhooks.
            signature: SignatureScheme::None,
            allowed_hosts: vec!["api.pinterest.com".into()],
            // Conversions are attributed up to 30 days after a click (the
            // API's default click window), restating those days.
            default_lookback_days: 30,
            options: vec![
                OptionSpec::new(
                    "level",
                    OptionType::String,
                    "what pulls report: `campaign`, `ad_group` or `ad`",
                )
                .default_value("campaign"),
                OptionSpec::new(
                    "conversion_metric",
                    OptionType::String,
                    "analytics column counted as conversions (`none`: count nothing)",
                )
                .default_value(DEFAULT_CONVERSIONS),
                OptionSpec::new(
                    "conversion_value_metric",
                    OptionType::String,
                    "analytics column counted as conversion value, micros if it ends in _IN_MICRO_DOLLAR (`none`: count nothing)",
                )
                .default_value(DEFAULT_CONVERSION_VALUE),
                OptionSpec::new(
                    "entity_statuses",
                    OptionType::List,
                    "statuses of the campaigns, ad groups or ads a pull reports on",
                )
                .default_value(DEFAULT_STATUSES),
            ],
            api_versions: API_VERSIONS
                .iter()
                .map(|(name, sunset)| ApiVersion::new(name, *sunset))
                .collect(),
            extra_metrics: EXTRAS.iter().map(|(_, name)| (*name).to_owned()).collect(),
        }
    }

    fn parse_report(body: &[u8], ctx: &ParseContext) -> Result<RowBatch, PluginError> {
        parse_report(body, ctx)
    }

    fn plan_pull(request: &PullRequest) -> Result<Vec<HttpRequest>, PluginError> {
        plan_pull(request)
    }
}

adpipe_plugin_sdk::export_adapter!(Pinterest);

/// The entity level a pull reports on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Campaign,
    AdGroup,
    Ad,
}

impl Level {
    fn parse(text: &str) -> Option<Level> {
        match text.trim() {
            "campaign" => Some(Level::Campaign),
            "ad_group" => Some(Level::AdGroup),
            "ad" => Some(Level::Ad),
            _ => None,
        }
    }

    /// The path segment of the listing (`campaigns`), also before `/analytics`.
    pub fn entities(self) -> &'static str {
        match self {
            Level::Campaign => "campaigns",
            Level::AdGroup => "ad_groups",
            Level::Ad => "ads",
        }
    }

    fn from_entities(segment: &str) -> Option<Level> {
        match segment {
            "campaigns" => Some(Level::Campaign),
            "ad_groups" => Some(Level::AdGroup),
            "ads" => Some(Level::Ad),
            _ => None,
        }
    }

    /// The analytics endpoint's required id parameter.
    pub fn ids_param(self) -> &'static str {
        match self {
            Level::Campaign => "campaign_ids",
            Level::AdGroup => "ad_group_ids",
            Level::Ad => "ad_ids",
        }
    }

    /// Identity columns requested at this level.
    fn id_columns(self) -> &'static [&'static str] {
        match self {
            Level::Campaign => &["AD_ACCOUNT_ID", "CAMPAIGN_ID", "CAMPAIGN_NAME"],
            Level::AdGroup => &[
                "AD_ACCOUNT_ID",
                "CAMPAIGN_ID",
                "CAMPAIGN_NAME",
                "AD_GROUP_ID",
                "AD_GROUP_NAME",
            ],
            Level::Ad => &[
                "AD_ACCOUNT_ID",
                "CAMPAIGN_ID",
                "CAMPAIGN_NAME",
                "AD_GROUP_ID",
                "AD_GROUP_NAME",
                "AD_ID",
                "AD_NAME",
            ],
        }
    }
}

/// An analytics column chosen by an option: upper-cased, `none` (or empty)
/// for nothing; refused unless it is a column name.
fn metric_option(
    options: &[(String, String)],
    name: &str,
    default: &str,
) -> Result<Option<String>, PluginError> {
    let value = adpipe_plugin_sdk::option(options, name)
        .unwrap_or(default)
        .trim();
    if value.is_empty() || value.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let column = value.to_ascii_uppercase();
    if !column
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(PluginError::value(
            format!("/options/{name}"),
            format!("`{value}` is not a Pinterest analytics column (e.g. {default})"),
        ));
    }
    Ok(Some(column))
}

/// Counted columns: conversions and conversion value, per the options.
struct Counted {
    conversions: Option<String>,
    value: Option<String>,
}

impl Counted {
    fn from_options(options: &[(String, String)]) -> Result<Counted, PluginError> {
        Ok(Counted {
            conversions: metric_option(options, "conversion_metric", DEFAULT_CONVERSIONS)?,
            value: metric_option(options, "conversion_value_metric", DEFAULT_CONVERSION_VALUE)?,
        })
    }
}

/// One value of an analytics row. Any JSON value is accepted and only
/// refused if the adapter reads that column, so a column it does not use
/// never rejects a page.
enum Cell<'a> {
    /// A number or a string.
    Num(Num<'a>),
    /// `null`: no value, as if absent.
    Empty,
    /// A boolean, array or object.
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Cell<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct CellVisitor;
        impl<'de> Visitor<'de> for CellVisitor {
            type Value = Cell<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a column value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Cell<'de>, E> {
                Ok(Cell::Num(Num::Text(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Cell<'de>, E> {
                Ok(Cell::Num(Num::Text(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Cell<'de>, E> {
                Ok(Cell::Num(Num::Text(Cow::Owned(v))))
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

/// An object answer: a listing page (`items`, `bookmark`) or an error
/// (`code`, `message`).
#[derive(Deserialize)]
struct Object<'a> {
    #[serde(borrow, default)]
    code: Option<Num<'a>>,
    #[serde(borrow, default)]
    message: Option<Text<'a>>,
    #[serde(borrow, default)]
    items: Option<Vec<Item<'a>>>,
    #[serde(borrow, default)]
    bookmark: Option<Text<'a>>,
}

/// A listed campaign, ad group or ad: only its id is read.
#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow, default)]
    id: Option<Num<'a>>,
}

type AnalyticsRow<'a> = Fields<'a, Cell<'a>>;

/// Parse one response body: an analytics array (rows), a listing page (no
/// rows; during a pull, the next request) or Pinterest's error.
pub fn parse_report(body: &[u8], ctx: &ParseContext) -> Result<RowBatch, PluginError> {
    let first = body
        .iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    match first {
        Some(b'[') => {
            let rows: Vec<AnalyticsRow<'_>> = adpipe_plugin_sdk::json::parse(body)?;
            parse_analytics(&rows, ctx)
        }
        Some(b'{') => {
            let object: Object<'_> = adpipe_plugin_sdk::json::parse(body)?;
            parse_object(object, ctx)
        }
        _ => {
            // Not JSON is `malformed` with its line and column.
            adpipe_plugin_sdk::json::parse::<serde::de::IgnoredAny>(body)?;
            Err(PluginError::shape(
                "",
                "expected the JSON array of an analytics response (or a listing page, or Pinterest's error object)",
            ))
        }
    }
}

fn parse_object(object: Object<'_>, ctx: &ParseContext) -> Result<RowBatch, PluginError> {
    let Some(items) = object.items else {
        if object.code.is_some() || object.message.is_some() {
            let code = object
                .code
                .as_ref()
                .map(|c| c.text().into_owned())
                .unwrap_or_else(|| "?".into());
            return Err(PluginError::new(
                ErrorKind::PlatformError,
                "/code",
                format!(
                    "Pinterest API error {code}: {}",
                    object.message.as_deref().unwrap_or("(no message)")
                ),
            ));
        }
        return Err(PluginError::shape(
            "",
            "expected the JSON array of an analytics response, a listing page with `items`, or Pinterest's {code, message} error",
        ));
    };
    let mut ids = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = || format!("/items/{i}/id");
        let id = item
            .id
            .as_ref()
            .ok_or_else(|| PluginError::shape(path(), "missing"))?
            .text();
        if !is_id(&id) {
            return Err(PluginError::value(
                path(),
                format!("`{id}` is not a Pinterest id (up to 18 digits)"),
            ));
        }
        ids.push(id.into_owned());
    }
    let mut out = BatchBuilder::new();
    let bookmark = object.bookmark.as_deref().filter(|b| !b.is_empty());
    let Some(url) = ctx.option("request.url") else {
        out.notice(format!(
            "a listing of {} entities carries no metrics: nothing to ingest",
            ids.len()
        ));
        return Ok(out.finish());
    };
    let planned = Planned::parse(url)?;
    let window = planned.window().ok_or_else(|| {
        PluginError::new(
            ErrorKind::Unsupported,
            "",
            "this listing page's URL carries no pull window (#start_date=…&end_date=…): \
             only listings a pull planned lead on to analytics",
        )
    })?;
    if ids.is_empty() {
        match bookmark {
            Some(b) => out.next_page(listing(
                &planned.prefix,
                &planned.account,
                planned.level,
                &statuses_of(&ctx.options)?,
                Some(&encode(b)),
                window,
            )),
            None => out.notice(format!("no {} to report on", planned.level.entities())),
        }
        return Ok(out.finish());
    }
    let counted = Counted::from_options(&ctx.options)?;
    out.next_page(analytics(
        &planned.prefix,
        &planned.account,
        planned.level,
        &ids,
        window,
        &counted,
        bookmark.map(encode).as_deref(),
    ));
    Ok(out.finish())
}

/// Pinterest ids: 1 to 18 digits (`^\d+$`, `maxLength: 18`).
fn is_id(text: &str) -> bool {
    !text.is_empty() && text.len() <= 18 && text.bytes().all(|b| b.is_ascii_digit())
}

fn parse_analytics(rows: &[AnalyticsRow<'_>], ctx: &ParseContext) -> Result<RowBatch, PluginError> {
    let planned = match ctx.option("request.url") {
        Some(url) => Some(Planned::parse(url)?),
        None => None,
    };
    if let Some(granularity) = planned.as_ref().and_then(|p| p.query_value("granularity")) {
        if granularity != "DAY" {
            return Err(PluginError::new(
                ErrorKind::Unsupported,
                "",
                format!("granularity={granularity}: adpipe reads Pinterest's daily rows only; request granularity=DAY"),
            ));
        }
    }
    if !rows.is_empty() && ctx.currency.is_none() {
        return Err(PluginError::new(
            ErrorKind::MissingContext,
            "/0",
            "Pinterest rows carry no currency (every amount is in the ad account's currency): \
             set `currency` on the pipeline or pass ?currency=",
        ));
    }
    let counted = Counted::from_options(&ctx.options)?;
    let mut out = BatchBuilder::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let at = |key: &str| format!("/{i}/{key}");
        let number = |key: &str| -> Result<Option<&Num<'_>>, PluginError> {
            match row.get(key) {
                None | Some(Cell::Empty) => Ok(None),
                Some(Cell::Num(n)) => Ok(Some(n)),
                Some(Cell::Other) => Err(PluginError::value(at(key), "expected a number")),
            }
        };
        let text = |key: &str| -> Result<Option<Cow<'_, str>>, PluginError> {
            match row.get(key) {
                None | Some(Cell::Empty) => Ok(None),
                Some(Cell::Num(n)) => Ok(Some(n.text()).filter(|t| !t.is_empty())),
                Some(Cell::Other) => Err(PluginError::value(at(key), "expected a string")),
            }
        };
        let id = |key: &str| -> Result<Option<Cow<'_, str>>, PluginError> {
            match text(key)? {
                Some(id) if !is_id(&id) => Err(PluginError::value(
                    at(key),
                    format!("`{id}` is not a Pinterest id (up to 18 digits)"),
                )),
                other => Ok(other),
            }
        };
        let campaign = id("CAMPAIGN_ID")?.ok_or_else(|| {
            PluginError::shape(
                at("CAMPAIGN_ID"),
                "missing: request the CAMPAIGN_ID column (ad group and ad analytics omit it otherwise)",
            )
        })?;
        let day = text("DATE")?.ok_or_else(|| {
            PluginError::shape(
                at("DATE"),
                "missing: request granularity=DAY (a TOTAL report has no DATE)",
            )
        })?;
        if day.len() > 10 {
            return Err(PluginError::new(
                ErrorKind::Unsupported,
                at("DATE"),
                format!("`{day}` has a time of day: adpipe reads Pinterest's daily rows only; request granularity=DAY"),
            ));
        }
        let date =
            Date::try_parse(&day).map_err(|e| PluginError::value(at("DATE"), e.to_string()))?;
        let account = match id("AD_ACCOUNT_ID")? {
            Some(a) => Some(a),
            None => id("ADVERTISER_ID")?,
        };
        let account = account
            .or_else(|| ctx.account_id.as_deref().map(Cow::Borrowed))
            .ok_or_else(|| {
                PluginError::new(
                    ErrorKind::MissingContext,
                    at("AD_ACCOUNT_ID"),
                    "no ad account: pass ?account_id= or request the AD_ACCOUNT_ID column",
                )
            })?;
        let spend = match (number("SPEND_IN_MICRO_DOLLAR")?, number("SPEND_IN_DOLLAR")?) {
            (Some(micros), _) => whole_micros_at(Some(micros), || at("SPEND_IN_MICRO_DOLLAR"))?,
            (None, Some(units)) => micros_at(Some(units), || at("SPEND_IN_DOLLAR"))?,
            (None, None) => 0,
        };
        let column = |name: &Option<String>| -> Result<i64, PluginError> {
            let Some(name) = name else { return Ok(0) };
            let value = number(name)?;
            if name.ends_with("_IN_MICRO_DOLLAR") {
                whole_micros_at(value, || at(name))
            } else {
                micros_at(value, || at(name))
            }
        };
        let ad_group = id("AD_GROUP_ID")?;
        let ad = id("AD_ID")?;
        let campaign_name = text("CAMPAIGN_NAME")?;
        let ad_group_name = text("AD_GROUP_NAME")?;
        let ad_name = text("AD_NAME")?;
        let row = Row {
            kind: RowKind::Snapshot,
            account_id: Some(out.intern(&account)),
            campaign_name: out.intern_opt(campaign_name.as_deref()),
            ad_group_id: out.intern_opt(ad_group.as_deref()),
            ad_group_name: out.intern_opt(ad_group_name.as_deref()),
            ad_id: out.intern_opt(ad.as_deref()),
            ad_name: out.intern_opt(ad_name.as_deref()),
            impressions: count_at(number("IMPRESSION_1")?, || at("IMPRESSION_1"))?,
            clicks: count_at(number("CLICKTHROUGH_1")?, || at("CLICKTHROUGH_1"))?,
            spend_micros: spend,
            conversions_micros: column(&counted.conversions)?,
            conversion_value_micros: column(&counted.value)?,
            ..Row::snapshot(out.intern(&campaign), date)
        };
        let index = out.push(row);
        for (key, name) in EXTRAS {
            out.extra(index, name, micros_at(number(key)?, || at(key))?);
        }
    }
    if let Some(planned) = &planned {
        if let (Some(bookmark), Some(window)) = (
            planned.fragment_value("bookmark"),
            planned.analytics_window(),
        ) {
            out.next_page(listing(
                &planned.prefix,
                &planned.account,
                planned.level,
                &statuses_of(&ctx.options)?,
                Some(bookmark),
                window,
            ));
        }
    }
    Ok(out.finish())
}

/// A URL this adapter planned, taken apart: `{prefix}/ad_accounts/{account}/{entities}[/analytics]?{query}#{fragment}`.
struct Planned {
    /// Origin and path up to `/ad_accounts` (`https://api.pinterest.com/v5`).
    prefix: String,
    account: String,
    level: Level,
    query: String,
    fragment: String,
}

impl Planned {
    fn parse(url: &str) -> Result<Planned, PluginError> {
        let not_ours = || {
            PluginError::new(
                ErrorKind::Unsupported,
                "",
                format!("`{url}` is not a Pinterest ad account URL this adapter plans"),
            )
        };
        // `base?query#fragment`, as an HTTP client composes the planned URL;
        // also `base#fragment?query`, the planned URL with `?query` appended.
        let (rest, after) = url.split_once('#').unwrap_or((url, ""));
        let (path, query, fragment) = match (rest.split_once('?'), after.split_once('?')) {
            (Some((path, query)), _) => (path, query, after),
            (None, Some((fragment, query))) => (rest, query, fragment),
            (None, None) => (rest, "", after),
        };
        let at = path.find("/ad_accounts/").ok_or_else(not_ours)?;
        let mut segments = path[at + "/ad_accounts/".len()..].split('/');
        let account = segments.next().filter(|a| is_id(a)).ok_or_else(not_ours)?;
        let level = segments
            .next()
            .and_then(Level::from_entities)
            .ok_or_else(not_ours)?;
        Ok(Planned {
            prefix: path[..at].to_owned(),
            account: account.to_owned(),
            level,
            query: query.to_owned(),
            fragment: fragment.to_owned(),
        })
    }

    fn query_value(&self, key: &str) -> Option<&str> {
        pair_value(&self.query, key)
    }

    fn fragment_value(&self, key: &str) -> Option<&str> {
        pair_value(&self.fragment, key).filter(|v| !v.is_empty())
    }

    /// The window a listing page carries in its fragment.
    fn window(&self) -> Option<(Date, Date)> {
        let from = Date::parse(self.fragment_value("start_date")?)?;
        let to = Date::parse(self.fragment_value("end_date")?)?;
        Some((from, to))
    }

    /// The window of an analytics request (its own query).
    fn analytics_window(&self) -> Option<(Date, Date)> {
        let from = Date::parse(self.query_value("start_date")?)?;
        let to = Date::parse(self.query_value("end_date")?)?;
        Some((from, to))
    }
}

/// The value of `key` in `a=1&b=2` (as written, not decoded).
fn pair_value<'a>(pairs: &'a str, key: &str) -> Option<&'a str> {
    pairs
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Percent-encode everything but unreserved characters (a bookmark is opaque:
/// `+`, `/` and `=` must arrive as they were).
fn encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

fn statuses_of(options: &[(String, String)]) -> Result<Vec<String>, PluginError> {
    let text = adpipe_plugin_sdk::option(options, "entity_statuses").unwrap_or(DEFAULT_STATUSES);
    let mut statuses = Vec::new();
    for status in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let status = status.to_ascii_uppercase();
        if !STATUSES.contains(&status.as_str()) {
            return Err(PluginError::value(
                "/options/entity_statuses",
                format!(
                    "`{status}` is not an entity status ({})",
                    STATUSES.join(", ")
                ),
            ));
        }
        statuses.push(status);
    }
    if statuses.is_empty() {
        return Err(PluginError::value(
            "/options/entity_statuses",
            "names no status: a pull would list nothing",
        ));
    }
    Ok(statuses)
}

/// A listing page of `level`'s entities, carrying the window in its fragment.
fn listing(
    prefix: &str,
    account: &str,
    level: Level,
    statuses: &[String],
    bookmark: Option<&str>,
    (from, to): (Date, Date),
) -> HttpRequest {
    let mut query: Vec<(String, String)> = statuses
        .iter()
        .map(|s| ("entity_statuses".to_owned(), s.clone()))
        .collect();
    query.push(("page_size".into(), MAX_IDS.to_string()));
    if let Some(bookmark) = bookmark {
        query.push(("bookmark".into(), bookmark.to_owned()));
    }
    HttpRequest {
        method: "GET".into(),
        url: format!(
            "{prefix}/ad_accounts/{account}/{}#start_date={from}&end_date={to}",
            level.entities()
        ),
        query,
        headers: vec![],
        body: None,
        credential: CredentialSlot::Bearer,
    }
}

/// The columns an analytics request asks for.
pub fn columns(
    level: Level,
    counted_conversions: Option<&str>,
    counted_value: Option<&str>,
) -> Vec<String> {
    let mut columns: Vec<String> = level.id_columns().iter().map(|c| (*c).to_owned()).collect();
    for column in ["SPEND_IN_MICRO_DOLLAR", "IMPRESSION_1", "CLICKTHROUGH_1"]
        .into_iter()
        .chain(counted_conversions)
        .chain(counted_value)
        .chain(EXTRAS.iter().map(|(c, _)| *c))
    {
        if !columns.iter().any(|c| c == column) {
            columns.push(column.to_owned());
        }
    }
    columns
}

/// The daily analytics of `ids`; `bookmark` (percent-encoded) continues the listing afterwards.
fn analytics(
    prefix: &str,
    account: &str,
    level: Level,
    ids: &[String],
    (from, to): (Date, Date),
    counted: &Counted,
    bookmark: Option<&str>,
) -> HttpRequest {
    let mut query = vec![
        ("start_date".to_owned(), from.to_string()),
        ("end_date".to_owned(), to.to_string()),
    ];
    query.extend(
        ids.iter()
            .map(|id| (level.ids_param().to_owned(), id.clone())),
    );
    query.push((
        "columns".into(),
        columns(
            level,
            counted.conversions.as_deref(),
            counted.value.as_deref(),
        )
        .join(","),
    ));
    query.push(("granularity".into(), "DAY".into()));
    let fragment = bookmark
        .map(|b| format!("#bookmark={b}"))
        .unwrap_or_default();
    HttpRequest {
        method: "GET".into(),
        url: format!(
            "{prefix}/ad_accounts/{account}/{}/analytics{fragment}",
            level.entities()
        ),
        query,
        headers: vec![],
        body: None,
        credential: CredentialSlot::Bearer,
    }
}

/// The first listing page of the pull's level; the rest follows page by page.
pub fn plan_pull(request: &PullRequest) -> Result<Vec<HttpRequest>, PluginError> {
    if !is_id(&request.account_id) {
        return Err(PluginError::value(
            "/account_id",
            format!(
                "`{}` is not a Pinterest ad account id (up to 18 digits)",
                request.account_id
            ),
        ));
    }
    if request.to < request.from {
        return Err(PluginError::value(
            "/until",
            "the window ends before it starts",
        ));
    }
    if request.to.days_since_epoch() - request.from.days_since_epoch() >= MAX_WINDOW_DAYS {
        return Err(PluginError::value(
            "/until",
            format!("Pinterest daily analytics span at most {MAX_WINDOW_DAYS} days"),
        ));
    }
    let level_text = adpipe_plugin_sdk::option(&request.options, "level").unwrap_or("campaign");
    let level = Level::parse(level_text).ok_or_else(|| {
        PluginError::value(
            "/options/level",
            format!("`{level_text}` is not a level: campaign, ad_group or ad"),
        )
    })?;
    // Checked now, so a bad option fails the plan rather than a later page.
    Counted::from_options(&request.options)?;
    let statuses = statuses_of(&request.options)?;
    let version =
        adpipe_plugin_sdk::option(&request.options, "api_version").unwrap_or(API_VERSIONS[0].0);
    let base = request
        .base_url
        .as_deref()
        .unwrap_or(API)
        .trim_end_matches('/');
    Ok(vec![listing(
        &format!("{base}/{version}"),
        &request.account_id,
        level,
        &statuses,
        None,
        (request.from, request.to),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ParseContext {
        ParseContext {
            account_id: Some("549755885175".into()),
            currency: Some("USD".into()),
            ..Default::default()
        }
    }

    #[test]
    fn micros_floats_and_absent_columns() {
        let body = br#"[{"DATE":"2026-11-01","CAMPAIGN_ID":"626744128982","SPEND_IN_MICRO_DOLLAR":38250000.0,
            "IMPRESSION_1":1200.0,"CLICKTHROUGH_1":31,"TOTAL_CONVERSIONS":2.5,"OUTBOUND_CLICK_1":12}]"#;
        let b = parse_report(body, &ctx()).expect("parses");
        let r = &b.rows[0];
        assert_eq!(
            (r.impressions, r.clicks, r.spend_micros),
            (1200, 31, 38_250_000)
        );
        assert_eq!(
            (r.conversions_micros, r.conversion_value_micros),
            (2_500_000, 0)
        );
        assert_eq!(b.str(r.account_id.expect("account")), "549755885175");
        assert_eq!(r.currency, None, "rows name no currency: the context's");
        assert_eq!(
            b.extras_of(0).collect::<Vec<_>>(),
            vec![("outbound_clicks", 12_000_000)]
        );
    }

    #[test]
    fn errors_name_their_path() {
        let bad = |body: &str| parse_report(body.as_bytes(), &ctx()).expect_err("rejected");
        assert_eq!(bad(r#"[{"DATE":"2026-11-01"}]"#).path, "/0/CAMPAIGN_ID");
        let e = bad(r#"[{"DATE":"2026-11-31","CAMPAIGN_ID":"1"}]"#);
        assert_eq!(
            (e.kind, e.path.as_str()),
            (ErrorKind::InvalidValue, "/0/DATE")
        );
        let e = bad(r#"[{"DATE":"2026-11-01","CAMPAIGN_ID":"1","SPEND_IN_MICRO_DOLLAR":1.5}]"#);
        assert_eq!(e.path, "/0/SPEND_IN_MICRO_DOLLAR");
        let e = bad(r#"[{"DATE":"2026-11-01","CAMPAIGN_ID":"1","IMPRESSION_1":true}]"#);
        assert_eq!(e.path, "/0/IMPRESSION_1");
        let e = bad(r#"[{"DATE":"2026-11-01 13:00:00","CAMPAIGN_ID":"1"}]"#);
        assert_eq!(e.kind, ErrorKind::Unsupported);
        let e = bad(r#"{"code":8,"message":"This request exceeded a rate limit."}"#);
        assert_eq!(e.kind, ErrorKind::PlatformError);
        assert_eq!(
            e.message,
            "Pinterest API error 8: This request exceeded a rate limit."
        );
        let e = bad(r#"{"data":[]}"#);
        assert_eq!(e.kind, ErrorKind::InvalidShape);
        let e = parse_report(
            br#"[{"DATE":"2026-11-01","CAMPAIGN_ID":"1"}]"#,
            &ParseContext::default(),
        )
        .expect_err("no currency");
        assert_eq!(e.kind, ErrorKind::MissingContext);
    }

    #[test]
    fn bookmarks_are_encoded_whole() {
        assert_eq!(encode("Yz0x+/=="), "Yz0x%2B%2F%3D%3D");
    }
}
