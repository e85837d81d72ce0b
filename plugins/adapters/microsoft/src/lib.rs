//! The Microsoft Advertising (Bing Ads) adapter for adpipe: Reporting API v13.
//!
//! **Report files**, as the Reporting service delivers them (the
//! "Report File Schema" of learn.microsoft.com/advertising/guides/reports,
//! and what the official SDKs' report readers accept):
//!
//! - the ZIP archive served at `ReportDownloadUrl` ("compressed by using zip
//!   compression"), or the CSV/TSV file inside it;
//! - UTF-8, with or without a byte order mark; `Format` `Csv` or `Tsv`;
//! - an optional header block of quoted `"Key: value"` lines (`Report Name`,
//!   `Report Time`, `Time Zone`, `Last Completed Available Day`/`Hour`,
//!   `Report Aggregation`, `Report Filter`, `Potential Incomplete Data`,
//!   `Rows: N`; absent with `ExcludeReportHeader`), then the column header
//!   row (required: adpipe maps columns by name), the data rows, and an
//!   optional `"©2026 Microsoft Corporation. All rights reserved. "` footer;
//! - columns of `CampaignPerformanceReport`, `AdGroupPerformanceReport` or
//!   `AdPerformanceReport`: `TimePeriod`, `CampaignId` (required),
//!   `AccountId`, `CampaignName`, `AdGroupId`/`AdGroupName`, `AdId`/`AdTitle`,
//!   `CurrencyCode`, `Impressions`, `Clicks`, `Spend` (required, account
//!   currency units), the conversions column (`Conversions` by default,
//!   fractional) and the revenue column (`Revenue`), and the extras
//!   `AllConversions` and `ViewThroughConversions` when present;
//! - `TimePeriod` of a `Daily` report is `yyyy-mm-dd`; of an `Hourly` one
//!   `yyyy-mm-dd|H` (FormatVersion 2.0) or `m/d/yyyy 12:00:00 AM|H` (1.0).
//!   Other aggregations (Weekly, Monthly, Summary...) are refused: their rows
//!   are not one day.
//! - Numbers: `--` (what the SDKs read as 0) and empty are 0; FormatVersion
//!   1.0's thousands separators (`1,000.00`) are read exactly; money becomes
//!   integer micros without floats.
//!
//! Attribute columns that split a campaign-day (`AdDistribution`,
//! `BidMatchType`, `DeliveredMatchType`, `DeviceOS`, `DeviceType`, `Goal`,
//! `GoalType`, `Network`, `TopVsOther`) become the row's breakdown key; two
//! rows of one entity and bucket otherwise (a column adpipe does not know
//! splits them) are refused rather than silently overwriting each other.
//! The header's `Rows: N` must match the data rows read (a truncated file is
//! refused), and `Potential Incomplete Data: true` is passed on as a notice.
//!
//! **Errors**: REST JSON faults (`ApiFaultDetail` with `OperationErrors` /
//! `BatchErrors`, `AdApiFaultDetail` with `Errors`, each with `Code`,
//! `ErrorCode`, `Message`) and SOAP `s:Fault` envelopes are platform errors.
//!
//! **Pulls** follow the asynchronous flow of SubmitGenerateReport and
//! PollGenerateReport over the REST JSON endpoints
//! (`https://reporting.api.bingads.microsoft.com/Reporting/v13/GenerateReport/Submit`
//! and `/Poll`; headers `Authorization: Bearer`, `DeveloperToken` (a host
//! secret, `pull.header_envs`), `CustomerId`, `CustomerAccountId`): the plan
//! is the Submit; its answer (`ReportRequestId`) parses to no rows and a next
//! page that polls; a `Pending` poll polls again, a `Success` one downloads
//! `ReportDownloadUrl` (pre-signed: no credential), whose archive parses to
//! the rows. Microsoft Advertising has no metric webhooks.

mod csv;
pub mod zip;

use std::borrow::Cow;
use std::collections::HashMap;

use adpipe_plugin_sdk::money::{parse_count, parse_micros, DecimalError};
use adpipe_plugin_sdk::num::{Num, Text};
use adpipe_plugin_sdk::{
    Adapter, AdapterInfo, ApiVersion, BatchBuilder, CredentialSlot, Date, ErrorKind, HttpRequest,
    OptionSpec, OptionType, ParseContext, PluginError, PullRequest, Row, RowBatch, SignatureScheme,
    Str,
};
use serde::Deserialize;

/// The Reporting service's REST root.
pub const API: &str = "https://reporting.api.bingads.microsoft.com";
/// Where `ReportDownloadUrl` points today (Azure blob storage of the
/// Reporting service). Microsoft says not to depend on that domain, but the
/// host contacts only listed hosts: a new domain needs a new plugin version.
pub const DOWNLOAD_HOSTS: &[&str] = &["bingadsappsstorageprod.blob.core.windows.net"];
/// Bing Ads API versions, newest first: v13 is the only live one and has no
/// announced end.
pub const API_VERSIONS: &[(&str, Option<&str>)] = &[("v13", None)];
const DEFAULT_CONVERSIONS: &str = "Conversions";
const DEFAULT_REVENUE: &str = "Revenue";
/// Extra metrics read when their column is present: (column, metric name).
const EXTRAS: &[(&str, &str)] = &[
    ("AllConversions", "all_conversions"),
    ("ViewThroughConversions", "view_through_conversions"),
];
/// Attribute columns that split an entity's bucket into several rows:
/// (column, breakdown dimension).
const BREAKDOWNS: &[(&str, &str)] = &[
    ("AdDistribution", "ad_distribution"),
    ("BidMatchType", "bid_match_type"),
    ("DeliveredMatchType", "delivered_match_type"),
    ("DeviceOS", "device_os"),
    ("DeviceType", "device_type"),
    ("Goal", "goal"),
    ("GoalType", "goal_type"),
    ("Network", "network"),
    ("TopVsOther", "top_vs_other"),
];

/// The Microsoft Advertising adapter, as the component exports it.
pub struct Microsoft;

impl Adapter for Microsoft {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            name: "microsoft".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            platform: "microsoft".into(),
            signature: SignatureScheme::None,
            allowed_hosts: std::iter::once("reporting.api.bingads.microsoft.com")
                .chain(DOWNLOAD_HOSTS.iter().copied())
                .map(str::to_owned)
                .collect(),
            default_lookback_days: 14,
            options: vec![
                OptionSpec::new(
                    "customer_id",
                    OptionType::String,
                    "customer id sent as the CustomerId header of pulls (the customer that owns the account)",
                ),
                OptionSpec::new(
                    "level",
                    OptionType::String,
                    "report of scheduled pulls: campaign (CampaignPerformanceReport), ad_group or ad",
                )
                .default_value("campaign"),
                OptionSpec::new(
                    "aggregation",
                    OptionType::String,
                    "TimePeriod of scheduled pulls: daily or hourly",
                )
                .default_value("daily"),
                OptionSpec::new(
                    "conversions_column",
                    OptionType::String,
                    "report column counted as conversions (`none`: count nothing)",
                )
                .default_value(DEFAULT_CONVERSIONS),
                OptionSpec::new(
                    "revenue_column",
                    OptionType::String,
                    "report column counted as conversion value (`none`: count nothing)",
                )
                .default_value(DEFAULT_REVENUE),
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

adpipe_plugin_sdk::export_adapter!(Microsoft);

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Parse one body: a report download (ZIP, CSV or TSV), a Submit or Poll
/// answer of a pull, or the platform's error.
pub fn parse_report(body: &[u8], ctx: &ParseContext) -> Result<RowBatch, PluginError> {
    if zip::is_zip(body) {
        let (name, contents) = zip::single_file(body)?;
        let contents = contents.strip_prefix(BOM).unwrap_or(&contents);
        if zip::is_zip(contents) {
            return Err(PluginError::shape(
                "",
                format!("`{name}` inside the archive is itself an archive"),
            ));
        }
        return parse_text(contents, ctx, Some(&name));
    }
    parse_text(body.strip_prefix(BOM).unwrap_or(body), ctx, None)
}

fn parse_text(
    body: &[u8],
    ctx: &ParseContext,
    file: Option<&str>,
) -> Result<RowBatch, PluginError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => Err(PluginError::shape(
            "",
            "empty body: expected a report file (CSV/TSV, or its ZIP download) or a Reporting API answer",
        )),
        Some(b'{') if file.is_none() => parse_json(body, ctx),
        Some(b'<') => Err(xml_refusal(&String::from_utf8_lossy(body))),
        Some(_) => {
            let text = std::str::from_utf8(body).map_err(|e| {
                PluginError::malformed(format!(
                    "the report file is not UTF-8 (byte {}): request it again",
                    e.valid_up_to()
                ))
            })?;
            parse_file(text, ctx)
        }
    }
}

// ---------------------------------------------------------------------------
// Report files

/// What the header block says.
#[derive(Default)]
struct Meta {
    rows: Option<u64>,
    hourly: Option<bool>,
    incomplete: bool,
}

/// Keys of the header block (the SDKs' report header readers).
const META_KEYS: &[&str] = &[
    "Report Name",
    "Report Time",
    "Time Zone",
    "Last Completed Available Day",
    "Last Completed Available Hour",
    "Report Aggregation",
    "Report Filter",
    "Potential Incomplete Data",
    "Rows",
];

/// `Key: value` of a header block line, if `record` is one.
fn meta_line<'r>(record: &'r csv::Record<'_>) -> Option<(&'r str, &'r str)> {
    let mut values = record.fields.iter().filter(|f| !f.trim().is_empty());
    let only = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let (key, value) = only.split_once(':')?;
    let key = key.trim();
    META_KEYS.contains(&key).then(|| (key, value.trim()))
}

/// The copyright footer line (`©2026 Microsoft Corporation. All rights reserved.`).
fn is_footer(record: &csv::Record<'_>) -> bool {
    let mut values = record.fields.iter().filter(|f| !f.trim().is_empty());
    matches!((values.next(), values.next()), (Some(only), None)
        if only.contains("Microsoft Corporation") && only.contains("rights reserved"))
}

/// Column name as matched: letters and digits, lowercase (`Campaign ID` is `CampaignId`).
fn column_key(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Where each column the adapter reads is.
struct Columns {
    names: Vec<String>,
    time_period: usize,
    campaign_id: usize,
    account_id: Option<usize>,
    campaign_name: Option<usize>,
    ad_group_id: Option<usize>,
    ad_group_name: Option<usize>,
    ad_id: Option<usize>,
    ad_title: Option<usize>,
    currency: Option<usize>,
    impressions: usize,
    clicks: usize,
    spend: usize,
    conversions: Option<usize>,
    revenue: Option<usize>,
    extras: Vec<(&'static str, usize)>,
    breakdowns: Vec<(&'static str, usize)>,
}

impl Columns {
    fn read(header: &csv::Record<'_>, ctx: &ParseContext) -> Result<Columns, PluginError> {
        let names: Vec<String> = header.fields.iter().map(|f| f.trim().to_owned()).collect();
        let keys: Vec<String> = names.iter().map(|n| column_key(n)).collect();
        let find = |name: &str| {
            let key = column_key(name);
            keys.iter().position(|k| *k == key)
        };
        let listed = || names.join(", ");
        if find("TimePeriod").is_none() && header.fields.iter().any(|f| looks_like_data(f)) {
            return Err(PluginError::shape(
                format!("/line/{}", header.line),
                format!(
                    "line {} holds values, not the column header row: request the report with ExcludeColumnHeaders false",
                    header.line
                ),
            ));
        }
        let require = |name: &str, why: &str| {
            find(name).ok_or_else(|| {
                PluginError::shape(
                    format!("/columns/{name}"),
                    format!(
                        "the report has no `{name}` column ({why}); its columns: {}",
                        listed()
                    ),
                )
            })
        };
        let counted = |option: &str, default: &str| -> Result<Option<usize>, PluginError> {
            match ctx.option(option).unwrap_or(default) {
                "none" => Ok(None),
                name => require(
                    name,
                    &format!("counted by the `{option}` option, `none` counts nothing"),
                )
                .map(Some),
            }
        };
        Ok(Columns {
            time_period: require(
                "TimePeriod",
                "a Daily or Hourly report's rows are days or hours",
            )?,
            campaign_id: require("CampaignId", "every row belongs to a campaign")?,
            impressions: require("Impressions", "request it")?,
            clicks: require("Clicks", "request it")?,
            spend: require("Spend", "request it")?,
            conversions: counted("conversions_column", DEFAULT_CONVERSIONS)?,
            revenue: counted("revenue_column", DEFAULT_REVENUE)?,
            account_id: find("AccountId"),
            campaign_name: find("CampaignName"),
            ad_group_id: find("AdGroupId"),
            ad_group_name: find("AdGroupName"),
            ad_id: find("AdId"),
            ad_title: find("AdTitle"),
            currency: find("CurrencyCode"),
            extras: EXTRAS
                .iter()
                .filter_map(|(column, metric)| Some((*metric, find(column)?)))
                .collect(),
            breakdowns: BREAKDOWNS
                .iter()
                .filter_map(|(column, dimension)| Some((*dimension, find(column)?)))
                .collect(),
            names,
        })
    }

    /// Columns the adapter does not read (for the duplicate-row refusal).
    fn unread(&self) -> Vec<&str> {
        let mut read = vec![
            self.time_period,
            self.campaign_id,
            self.impressions,
            self.clicks,
            self.spend,
        ];
        read.extend(
            [
                self.account_id,
                self.campaign_name,
                self.ad_group_id,
                self.ad_group_name,
                self.ad_id,
                self.ad_title,
                self.currency,
                self.conversions,
                self.revenue,
            ]
            .into_iter()
            .flatten(),
        );
        read.extend(self.extras.iter().map(|(_, i)| *i));
        read.extend(self.breakdowns.iter().map(|(_, i)| *i));
        (0..self.names.len())
            .filter(|i| !read.contains(i))
            .map(|i| self.names[i].as_str())
            .collect()
    }
}

/// A value rather than a column name: starts with a digit (an id, a day, a number).
fn looks_like_data(field: &str) -> bool {
    field.trim().starts_with(|c: char| c.is_ascii_digit())
}

/// `,` unless the column header row is tab-separated (`Format` `Tsv`).
fn delimiter(text: &str) -> u8 {
    for line in text.lines() {
        let bare = line.trim().trim_matches('"');
        if bare.is_empty() {
            continue;
        }
        let meta = bare
            .split_once(':')
            .is_some_and(|(key, _)| META_KEYS.contains(&key.trim()));
        if !meta {
            return if line.contains('\t') { b'\t' } else { b',' };
        }
    }
    b','
}

/// One row's identity, to catch two rows of the same entity and bucket.
type Identity = (
    Str,
    Str,
    Option<Str>,
    Option<Str>,
    Option<Str>,
    i64,
    Option<u8>,
);

fn parse_file(text: &str, ctx: &ParseContext) -> Result<RowBatch, PluginError> {
    let malformed = |e: String| PluginError::malformed(format!("not a CSV/TSV report file: {e}"));
    let mut reader = csv::Reader::new(text, delimiter(text));
    let mut meta = Meta::default();
    let mut out = BatchBuilder::new();
    let columns = loop {
        let Some(record) = reader.next_record().map_err(malformed)? else {
            if meta.rows == Some(0) {
                out.notice("the report has no rows for its time (Rows: 0)");
                return Ok(out.finish());
            }
            return Err(PluginError::shape(
                "",
                "the report file has no column header row: request it with ExcludeColumnHeaders false",
            ));
        };
        if record.is_blank() {
            continue;
        }
        if let Some((key, value)) = meta_line(&record) {
            read_meta(&mut meta, key, value, record.line)?;
            continue;
        }
        if is_footer(&record) {
            continue;
        }
        break Columns::read(&record, ctx)?;
    };
    if meta.incomplete {
        out.notice(
            "Potential Incomplete Data: true: the last day may still change (a later pull restates it)",
        );
    }
    let mut seen: HashMap<Identity, usize> = HashMap::new();
    let (mut rows, mut totals, mut footer) = (0u64, 0u64, false);
    while let Some(record) = reader.next_record().map_err(malformed)? {
        if record.is_blank() {
            continue;
        }
        if is_footer(&record) {
            footer = true;
            continue;
        }
        if footer {
            return Err(PluginError::shape(
                format!("/line/{}", record.line),
                format!("line {}: data after the copyright footer", record.line),
            ));
        }
        let first = record.fields.first().map_or("", |f| f.trim());
        let period = record
            .fields
            .get(columns.time_period)
            .map_or("", |f| f.trim());
        if first.starts_with("Total") && (period.is_empty() || period == "--") {
            totals += 1; // a totals line, not an entity's figures
            continue;
        }
        if record.fields.len() != columns.names.len() {
            return Err(PluginError::shape(
                format!("/line/{}", record.line),
                format!(
                    "line {} has {} fields, the column header row {}",
                    record.line,
                    record.fields.len(),
                    columns.names.len()
                ),
            ));
        }
        row(&mut out, &mut seen, &columns, &meta, &record, ctx)?;
        rows += 1;
    }
    if let Some(expected) = meta.rows {
        if expected != rows && expected != rows + totals {
            return Err(PluginError::shape(
                "/Rows",
                format!(
                    "the header says Rows: {expected} but the file holds {rows}: it is truncated or altered, download it again"
                ),
            ));
        }
    }
    if totals > 0 {
        out.notice(format!("{totals} totals line(s) skipped"));
    }
    Ok(out.finish())
}

fn read_meta(meta: &mut Meta, key: &str, value: &str, line: usize) -> Result<(), PluginError> {
    match key {
        "Rows" => {
            meta.rows = Some(value.replace(',', "").parse().map_err(|_| {
                PluginError::value("/Rows", format!("line {line}: `Rows: {value}` is not a count"))
            })?)
        }
        "Report Aggregation" => {
            meta.hourly = match value.to_ascii_lowercase().as_str() {
                "daily" | "day" => Some(false),
                "hourly" | "hour" => Some(true),
                other => {
                    return Err(PluginError::new(
                        ErrorKind::Unsupported,
                        "/Report Aggregation",
                        format!(
                            "a `{other}` report: adpipe reads Daily and Hourly reports, whose rows are one day or one hour"
                        ),
                    ))
                }
            }
        }
        "Potential Incomplete Data" => meta.incomplete = value.eq_ignore_ascii_case("true"),
        _ => {}
    }
    Ok(())
}

/// A field that may be absent: empty and `--` are.
fn present(text: &str) -> Option<&str> {
    let t = text.trim();
    (!t.is_empty() && t != "--").then_some(t)
}

/// A number as the report writes it: `--` and empty are 0, FormatVersion
/// 1.0's thousands separators are dropped (only where they group thousands).
fn plain_number(text: &str) -> Result<Option<Cow<'_, str>>, DecimalError> {
    let Some(t) = present(text) else {
        return Ok(None);
    };
    if !t.contains(',') {
        return Ok(Some(Cow::Borrowed(t)));
    }
    let unsigned = t.strip_prefix(['-', '+']).unwrap_or(t);
    let whole = unsigned.split('.').next().unwrap_or("");
    let mut groups = whole.split(',');
    let head_ok = groups
        .next()
        .is_some_and(|g| (1..=3).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_digit()));
    if !head_ok || !groups.all(|g| g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit())) {
        return Err(DecimalError::NotANumber(t.to_owned()));
    }
    Ok(Some(Cow::Owned(t.replace(',', ""))))
}

fn amount(text: &str) -> Result<i64, DecimalError> {
    plain_number(text)?.map_or(Ok(0), |t| parse_micros(&t))
}

fn count(text: &str) -> Result<u64, DecimalError> {
    plain_number(text)?.map_or(Ok(0), |t| parse_count(&t))
}

/// A `TimePeriod`: `yyyy-mm-dd`, or `yyyy-mm-dd|H` / `m/d/yyyy 12:00:00 AM|H` (hourly).
fn time_period(text: &str, hourly: Option<bool>) -> Result<(Date, Option<u8>), String> {
    let (day, hour) = match text.split_once('|') {
        Some((day, hour)) => (day.trim(), Some(hour.trim())),
        None => (text.trim(), None),
    };
    let date = match Date::try_parse(day) {
        Ok(date) => date,
        Err(iso) => us_date(day).ok_or_else(|| iso.to_string())?,
    };
    let hour = match hour {
        Some(h) => Some(
            h.parse::<u8>()
                .ok()
                .filter(|h| *h < 24)
                .ok_or_else(|| format!("`{text}`: the hour after `|` must be 0 to 23"))?,
        ),
        None if hourly == Some(true) => {
            return Err(format!(
                "`{text}` in an Hourly report: expected `yyyy-mm-dd|hour`"
            ))
        }
        None => None,
    };
    Ok((date, hour))
}

/// `m/d/yyyy`, optionally followed by a time (FormatVersion 1.0's hourly day).
fn us_date(text: &str) -> Option<Date> {
    let day = text.split(' ').next()?;
    let mut parts = day.split('/');
    let (m, d, y) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 {
        return None;
    }
    let digits = |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit());
    if !(digits(m) && digits(d) && digits(y)) {
        return None;
    }
    Date::new(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

fn row(
    out: &mut BatchBuilder,
    seen: &mut HashMap<Identity, usize>,
    columns: &Columns,
    meta: &Meta,
    record: &csv::Record<'_>,
    ctx: &ParseContext,
) -> Result<(), PluginError> {
    let line = record.line;
    let field = |i: usize| record.fields[i].trim();
    let optional = |i: Option<usize>| i.and_then(|i| present(field(i)));
    let at = |i: usize| format!("/line/{line}/{}", columns.names[i]);
    let value_error = |i: usize, why: String| {
        PluginError::value(at(i), format!("line {line}, {}: {why}", columns.names[i]))
    };
    let (date, hour) = time_period(field(columns.time_period), meta.hourly)
        .map_err(|why| value_error(columns.time_period, why))?;
    let account = optional(columns.account_id)
        .or(ctx.account_id.as_deref())
        .ok_or_else(|| {
            PluginError::new(
                ErrorKind::MissingContext,
                format!("/line/{line}/AccountId"),
                "no account: add the AccountId column or pass ?account_id=",
            )
        })?;
    let campaign = present(field(columns.campaign_id)).ok_or_else(|| {
        value_error(
            columns.campaign_id,
            "every row needs its campaign id".into(),
        )
    })?;
    let count_of = |i: usize| count(field(i)).map_err(|e| value_error(i, e.to_string()));
    let micros_of = |i: usize| amount(field(i)).map_err(|e| value_error(i, e.to_string()));
    let impressions = count_of(columns.impressions)?;
    let clicks = count_of(columns.clicks)?;
    let spend = micros_of(columns.spend)?;
    let conversions = columns.conversions.map(micros_of).transpose()?.unwrap_or(0);
    let revenue = columns.revenue.map(micros_of).transpose()?.unwrap_or(0);
    let breakdown = adpipe_plugin_sdk::breakdown_key(
        columns
            .breakdowns
            .iter()
            .map(|(dimension, i)| (*dimension, field(*i))),
    );
    let account = out.intern(account);
    let campaign = out.intern(campaign);
    let ad_group_id = out.intern_opt(optional(columns.ad_group_id));
    let ad_id = out.intern_opt(optional(columns.ad_id));
    let breakdown = breakdown.map(|key| out.intern(&key));
    let identity = (
        account,
        campaign,
        ad_group_id,
        ad_id,
        breakdown,
        date.days_since_epoch(),
        hour,
    );
    if let Some(first) = seen.insert(identity, line) {
        let unread = columns.unread();
        return Err(PluginError::shape(
            format!("/line/{line}"),
            format!(
                "line {line} is the same entity and {} as line {first}: the report splits it by a column adpipe does not read ({}); request the report without it",
                if hour.is_some() { "hour" } else { "day" },
                if unread.is_empty() { "none found".to_owned() } else { unread.join(", ") }
            ),
        ));
    }
    let row = Row {
        account_id: Some(account),
        campaign_name: out.intern_opt(optional(columns.campaign_name)),
        ad_group_id,
        ad_group_name: out.intern_opt(optional(columns.ad_group_name)),
        ad_id,
        ad_name: out.intern_opt(optional(columns.ad_title)),
        breakdown,
        hour,
        currency: out.intern_opt(optional(columns.currency)),
        impressions,
        clicks,
        spend_micros: spend,
        conversions_micros: conversions,
        conversion_value_micros: revenue,
        ..Row::snapshot(campaign, date)
    };
    let index = out.push(row);
    for (metric, i) in &columns.extras {
        let value = micros_of(*i)?;
        out.extra(index, metric, value);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Reporting API answers (JSON)

#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(rename = "ReportRequestId", borrow, default)]
    report_request_id: Option<Num<'a>>,
    #[serde(rename = "ReportRequestStatus", borrow, default)]
    report_request_status: Option<Status<'a>>,
    #[serde(rename = "OperationErrors", borrow, default)]
    operation_errors: Option<Vec<ApiError<'a>>>,
    #[serde(rename = "BatchErrors", borrow, default)]
    batch_errors: Option<Vec<ApiError<'a>>>,
    #[serde(rename = "Errors", borrow, default)]
    errors: Option<Vec<ApiError<'a>>>,
    #[serde(rename = "TrackingId", borrow, default)]
    tracking_id: Option<Text<'a>>,
    #[serde(rename = "Type", borrow, default)]
    kind: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct Status<'a> {
    #[serde(rename = "Status", borrow, default)]
    status: Option<Text<'a>>,
    #[serde(rename = "ReportDownloadUrl", borrow, default)]
    report_download_url: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct ApiError<'a> {
    #[serde(rename = "Code", borrow, default)]
    code: Option<Num<'a>>,
    #[serde(rename = "ErrorCode", borrow, default)]
    error_code: Option<Text<'a>>,
    #[serde(rename = "Message", borrow, default)]
    message: Option<Text<'a>>,
}

fn parse_json(body: &[u8], ctx: &ParseContext) -> Result<RowBatch, PluginError> {
    let answer: Answer<'_> = adpipe_plugin_sdk::json::parse(body)?;
    let tracking = answer
        .tracking_id
        .as_deref()
        .map(|t| format!(" (TrackingId {t})"))
        .unwrap_or_default();
    for (name, errors) in [
        ("OperationErrors", &answer.operation_errors),
        ("BatchErrors", &answer.batch_errors),
        ("Errors", &answer.errors),
    ] {
        if let Some(first) = errors.as_ref().and_then(|e| e.first()) {
            let code = first.code.as_ref().map(|c| c.text().into_owned());
            return Err(PluginError::new(
                ErrorKind::PlatformError,
                format!("/{name}/0"),
                format!(
                    "Microsoft Advertising API error {} {}: {}{tracking}",
                    code.as_deref().unwrap_or("?"),
                    first.error_code.as_deref().unwrap_or("(no ErrorCode)"),
                    first.message.as_deref().unwrap_or("(no Message)"),
                ),
            ));
        }
    }
    if let Some(kind) = answer
        .kind
        .as_deref()
        .filter(|k| k.ends_with("Fault") || k.ends_with("FaultDetail"))
    {
        return Err(PluginError::new(
            ErrorKind::PlatformError,
            "/Type",
            format!("Microsoft Advertising API fault {kind} without error details{tracking}"),
        ));
    }
    let mut out = BatchBuilder::new();
    if let Some(id) = &answer.report_request_id {
        // SubmitGenerateReport's answer: poll for the report.
        let id = id.text();
        if id.trim().is_empty() {
            return Err(PluginError::value(
                "/ReportRequestId",
                "empty report request id",
            ));
        }
        out.notice(format!("report request {id} submitted: polling it"));
        out.next_page(poll(ctx, &id));
        return Ok(out.finish());
    }
    let Some(status) = &answer.report_request_status else {
        return Err(PluginError::shape(
            "",
            "not a Reporting API answer: expected ReportRequestId (Submit), ReportRequestStatus (Poll) or an error",
        ));
    };
    match status.status.as_deref() {
        Some("Success") => match status.report_download_url.as_deref().map(str::trim) {
            Some(url) if !url.is_empty() => out.next_page(download(url)?),
            _ => out
                .notice("the report is ready and has no data for its time (no ReportDownloadUrl)"),
        },
        Some("Pending") => {
            out.notice("the report is still Pending: polling again");
            out.next_page(repoll(ctx)?);
        }
        Some("Error") => return Err(PluginError::new(
            ErrorKind::PlatformError,
            "/ReportRequestStatus/Status",
            "the Reporting service could not generate the report (Status Error): submit it again",
        )),
        Some(other) => {
            return Err(PluginError::value(
                "/ReportRequestStatus/Status",
                format!("`{other}` is not Success, Pending or Error"),
            ))
        }
        None => {
            return Err(PluginError::shape(
                "/ReportRequestStatus/Status",
                "missing: a Poll answer has the report's Status",
            ))
        }
    }
    Ok(out.finish())
}

/// The poll URL: the request's own (a Poll), or the Submit's sibling.
fn poll_url(ctx: &ParseContext) -> String {
    let default = || format!("{API}/Reporting/{}/GenerateReport/Poll", API_VERSIONS[0].0);
    let Some(url) = ctx.option("request.url") else {
        return default();
    };
    let url = url.split(['?', '#']).next().unwrap_or(url);
    if let Some(root) = url.strip_suffix("/Submit") {
        format!("{root}/Poll")
    } else if url.ends_with("/GenerateReport/Poll") {
        url.to_owned()
    } else {
        default()
    }
}

/// PollGenerateReport for `id`, with the account headers of the Submit.
fn poll(ctx: &ParseContext, id: &str) -> HttpRequest {
    let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    if let Some(customer) = ctx.option("customer_id") {
        headers.push(("CustomerId".into(), customer.to_owned()));
    }
    if let Some(account) = &ctx.account_id {
        headers.push(("CustomerAccountId".into(), account.clone()));
    }
    HttpRequest {
        method: "POST".into(),
        url: poll_url(ctx),
        query: vec![("ReportRequestId".into(), encode(id))],
        headers,
        body: Some(
            serde_json::json!({ "ReportRequestId": id })
                .to_string()
                .into_bytes(),
        ),
        credential: CredentialSlot::Bearer,
    }
}

/// A Pending poll's answer does not repeat the request id, and the host hands
/// the plugin the URL of the page it parses but not the body it sent: so
/// every poll also carries the id in its query (`?ReportRequestId=`), where
/// the next poll finds it.
fn repoll(ctx: &ParseContext) -> Result<HttpRequest, PluginError> {
    let id = ctx
        .option("request.url")
        .and_then(|url| url.split_once('?'))
        .and_then(|(_, query)| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix("ReportRequestId="))
        })
        .map(decode)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            PluginError::new(
                ErrorKind::MissingContext,
                "/ReportRequestStatus",
                "a Pending poll answer names no report request: pulls poll again by themselves; pushed, it carries no rows",
            )
        })?;
    Ok(poll(ctx, &id))
}

/// Percent-encode everything but RFC 3986 unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Undo percent-encoding (a malformed escape stays as it is).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| char::from(*b).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// GET the pre-signed download URL as Microsoft wrote it (its query is the signature).
fn download(url: &str) -> Result<HttpRequest, PluginError> {
    let url = url.split('#').next().unwrap_or(url);
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(PluginError::value(
            "/ReportRequestStatus/ReportDownloadUrl",
            format!("`{url}` is not an absolute http(s) URL"),
        ));
    }
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let query = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    Ok(HttpRequest {
        method: "GET".into(),
        url: base.to_owned(),
        query,
        headers: vec![],
        body: None,
        credential: CredentialSlot::None,
    })
}

// ---------------------------------------------------------------------------
// SOAP and XML

/// The text of the first `<name>` (any namespace prefix), entities decoded.
fn xml_text(xml: &str, name: &str) -> Option<String> {
    let mut from = 0;
    while let Some(found) = xml[from..].find(name) {
        let at = from + found;
        from = at + name.len();
        let before = &xml[..at];
        let open = before.rfind('<')?;
        let prefix = &before[open + 1..];
        let is_open_tag = prefix.is_empty()
            || (prefix.ends_with(':')
                && prefix[..prefix.len() - 1]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric()));
        let after = xml[from..].chars().next();
        if !is_open_tag || !matches!(after, Some('>' | ' ')) {
            continue;
        }
        let close = xml[from..].find('>')? + from;
        if xml[..close].ends_with('/') {
            return None; // <Detail i:nil="true"/>
        }
        let text = xml[close + 1..].split('<').next()?.trim();
        return Some(
            text.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
    }
    None
}

/// Why an XML body is refused: the platform's SOAP fault, or a format adpipe does not read.
fn xml_refusal(xml: &str) -> PluginError {
    if xml.contains("Fault>") || xml.contains("Fault ") {
        let code = xml_text(xml, "Code");
        let error_code = xml_text(xml, "ErrorCode");
        let message = xml_text(xml, "Message").or_else(|| xml_text(xml, "faultstring"));
        let tracking = xml_text(xml, "TrackingId")
            .map(|t| format!(" (TrackingId {t})"))
            .unwrap_or_default();
        return PluginError::new(
            ErrorKind::PlatformError,
            "/Envelope/Body/Fault",
            format!(
                "Microsoft Advertising API fault {} {}: {}{tracking}",
                code.as_deref().unwrap_or("?"),
                error_code.as_deref().unwrap_or("(no ErrorCode)"),
                message.as_deref().unwrap_or("(no message)"),
            ),
        );
    }
    if xml.contains("GenerateReportResponse") {
        return PluginError::new(
            ErrorKind::Unsupported,
            "",
            "a SOAP Reporting answer: adpipe pulls through the REST JSON endpoints",
        );
    }
    PluginError::new(
        ErrorKind::Unsupported,
        "",
        "an Xml report file: request Format Csv or Tsv",
    )
}

// ---------------------------------------------------------------------------
// Pulls

/// SubmitGenerateReport of the account's report over the window; the rest
/// of the flow comes from the parsed answers (see the module docs).
pub fn plan_pull(request: &PullRequest) -> Result<Vec<HttpRequest>, PluginError> {
    let account: u64 = request
        .account_id
        .trim()
        .parse()
        .map_err(|_| {
            PluginError::value(
                "/account_id",
                format!(
                    "`{}` is not a Microsoft Advertising account id (the numeric AccountId, not the account number)",
                    request.account_id
                ),
            )
        })?;
    if request.to < request.from {
        return Err(PluginError::value(
            "/until",
            "the window ends before it starts",
        ));
    }
    let option = |name: &str| adpipe_plugin_sdk::option(&request.options, name);
    let (report, entity): (&str, &[&str]) = match option("level").unwrap_or("campaign") {
        "campaign" => ("CampaignPerformanceReport", &[]),
        "ad_group" => ("AdGroupPerformanceReport", &["AdGroupId", "AdGroupName"]),
        "ad" => (
            "AdPerformanceReport",
            &["AdGroupId", "AdGroupName", "AdId", "AdTitle"],
        ),
        other => {
            return Err(PluginError::value(
                "/options/level",
                format!("`{other}` is not one of campaign, ad_group, ad"),
            ))
        }
    };
    let aggregation = match option("aggregation")
        .unwrap_or("daily")
        .to_ascii_lowercase()
        .as_str()
    {
        "daily" => "Daily",
        "hourly" => "Hourly",
        other => {
            return Err(PluginError::value(
                "/options/aggregation",
                format!("`{other}` is not daily or hourly"),
            ))
        }
    };
    let mut columns: Vec<&str> = vec![
        "TimePeriod",
        "AccountId",
        "AccountName",
        "CampaignId",
        "CampaignName",
    ];
    columns.extend_from_slice(entity);
    columns.extend_from_slice(&["CurrencyCode", "Impressions", "Clicks", "Spend"]);
    for (name, default) in [
        ("conversions_column", DEFAULT_CONVERSIONS),
        ("revenue_column", DEFAULT_REVENUE),
    ] {
        match option(name).unwrap_or(default) {
            "none" => {}
            column if column.bytes().all(|b| b.is_ascii_alphanumeric()) && !column.is_empty() => {
                columns.push(column)
            }
            column => {
                return Err(PluginError::value(
                    format!("/options/{name}"),
                    format!("`{column}` is not a report column name"),
                ))
            }
        }
    }
    columns.extend(EXTRAS.iter().map(|(column, _)| *column));
    let mut unique = Vec::with_capacity(columns.len());
    for column in columns {
        if !unique.contains(&column) {
            unique.push(column);
        }
    }
    let day = |d: Date| serde_json::json!({ "Day": d.day, "Month": d.month, "Year": d.year });
    let body = serde_json::json!({
        "ReportRequest": {
            "Type": format!("{report}Request"),
            "ReportName": format!("adpipe {report} {}..{}", request.from, request.to),
            "Format": "Csv",
            "FormatVersion": "2.0",
            "ExcludeColumnHeaders": false,
            "ExcludeReportHeader": false,
            "ExcludeReportFooter": false,
            "ReturnOnlyCompleteData": false,
            "Aggregation": aggregation,
            "Columns": unique,
            "Scope": { "AccountIds": [account] },
            "Time": {
                "CustomDateRangeStart": day(request.from),
                "CustomDateRangeEnd": day(request.to),
            },
        }
    });
    let version = option("api_version").unwrap_or(API_VERSIONS[0].0);
    let base = request
        .base_url
        .as_deref()
        .unwrap_or(API)
        .trim_end_matches('/');
    let mut headers = vec![
        ("Content-Type".to_owned(), "application/json".to_owned()),
        ("CustomerAccountId".to_owned(), account.to_string()),
    ];
    if let Some(customer) = option("customer_id") {
        headers.push(("CustomerId".into(), customer.trim().to_owned()));
    }
    Ok(vec![HttpRequest {
        method: "POST".into(),
        url: format!("{base}/Reporting/{version}/GenerateReport/Submit"),
        query: vec![],
        headers,
        body: Some(body.to_string().into_bytes()),
        credential: CredentialSlot::Bearer,
    }])
}
