//! Helpers every adpipe platform plugin needs, compiled natively and for
//! `wasm32-wasip2` alike, so an adapter's mapping logic is plain Rust that unit
//! tests and benchmarks can call without a WASM runtime.
//!
//! - [`BatchBuilder`] builds the interned row batch the WIT `row-batch` carries.
//! - [`money`] parses platform decimal strings into integer micros (never floats).
//! - [`Date`] parses and validates reporting days.
//! - [`PluginError`] is the typed rejection naming the offending field.
//! - [`json::from_body`] deserializes a payload, checking its UTF-8 once.
//! - [`num`] has the borrowing payload types that make the fast parse the
//!   easy one: [`num::Text`] (a string borrowed from the payload, also inside
//!   `Option` and `Vec`), [`num::Num`] (a number or numeric string, read once
//!   into micros or a count) and [`num::Fields`] (an object with free keys).
//! - [`memcmp`] replaces wasi-libc's byte-at-a-time `memcmp` in components.

pub mod json;
pub mod memcmp;
pub mod money;
pub mod num;
#[cfg(feature = "testing")]
pub mod testing;

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)] // wit-bindgen's generated glue
#[doc(hidden)]
pub mod component;

/// An adapter plugin, written against native types. [`export_adapter!`]
/// turns an implementation into the `adapter-plugin` component's exports;
/// natively, the same functions serve tests and benchmarks.
pub trait Adapter {
    /// Name, version, platform and capabilities.
    fn describe() -> AdapterInfo;

    /// How to answer a webhook verification handshake.
    fn handshake(query: &[(String, String)]) -> HandshakePlan {
        let _ = query;
        HandshakePlan::Reject(format!(
            "{} webhooks have no verification handshake",
            Self::describe().platform
        ))
    }

    /// Parse one report-API response body (one page).
    fn parse_report(body: &[u8], ctx: &ParseContext) -> Result<RowBatch, PluginError>;

    /// Parse one verified webhook delivery.
    fn parse_webhook(
        request: &WebhookRequest,
        ctx: &ParseContext,
    ) -> Result<RowBatch, PluginError> {
        let _ = (request, ctx);
        Err(PluginError::new(
            ErrorKind::Unsupported,
            "",
            format!("{} sends no metric webhooks", Self::describe().platform),
        ))
    }

    /// Plan the first requests of a scheduled pull.
    fn plan_pull(request: &PullRequest) -> Result<Vec<HttpRequest>, PluginError>;
}

/// Export an [`Adapter`] implementation as the component's `adapter` interface.
///
/// ```ignore
/// struct Meta;
/// impl adpipe_plugin_sdk::Adapter for Meta { /* ... */ }
/// adpipe_plugin_sdk::export_adapter!(Meta);
/// ```
#[macro_export]
macro_rules! export_adapter {
    ($adapter:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type AdpipeExportedAdapter = $crate::component::Exported<$adapter>;
            $crate::component::export_adapter_world!(AdpipeExportedAdapter with_types_in $crate::component);
        };
    };
}

/// An incoming webhook request (mirrors the WIT `webhook-request`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookRequest {
    pub query: Vec<(String, String)>,
    /// Header names are lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

use std::fmt;
use std::hash::BuildHasher as _;

/// A calendar day (validated: month 1..=12, day within the month).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Date {
    /// A validated date.
    pub fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date { year, month, day })
    }

    /// Parse `YYYY-MM-DD`, optionally followed by a time (`YYYY-MM-DD HH:MM:SS`
    /// or `YYYY-MM-DDTHH:MM:SS...`), which is ignored. [`Date::try_parse`]
    /// says why a text is not a date.
    pub fn parse(text: &str) -> Option<Date> {
        Date::try_parse(text).ok()
    }

    /// [`Date::parse`], with the reason when `text` is not a date: its
    /// shape, a month outside 1 to 12, or a day the month does not have
    /// (`2026-11-31`: "November 2026 has 30 days").
    pub fn try_parse(text: &str) -> Result<Date, DateError> {
        let shape = || DateError::Shape(text.to_owned());
        let bytes = text.as_bytes();
        if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return Err(shape());
        }
        if bytes.len() > 10 && bytes[10] != b' ' && bytes[10] != b'T' {
            return Err(shape());
        }
        let num = |range: std::ops::Range<usize>| -> Result<u32, DateError> {
            let part = text.get(range).ok_or_else(shape)?;
            if !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(shape());
            }
            part.parse().map_err(|_| shape())
        };
        let year = u16::try_from(num(0..4)?).map_err(|_| shape())?;
        let month = u8::try_from(num(5..7)?).map_err(|_| shape())?;
        let day = u8::try_from(num(8..10)?).map_err(|_| shape())?;
        if !(1..=12).contains(&month) {
            return Err(DateError::Month {
                text: text.to_owned(),
                month,
            });
        }
        Date::new(year, month, day).ok_or_else(|| DateError::Day {
            text: text.to_owned(),
            month: MONTH_NAMES[usize::from(month - 1)],
            year,
            days: days_in_month(year, month),
        })
    }

    /// Days since 1970-01-01 (proleptic Gregorian).
    pub fn days_since_epoch(self) -> i64 {
        let (y, m, d) = (
            i64::from(self.year),
            i64::from(self.month),
            i64::from(self.day),
        );
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date `days` days since 1970-01-01, if it fits a `u16` year.
    pub fn from_days_since_epoch(days: i64) -> Option<Date> {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Date::new(
            u16::try_from(year).ok()?,
            u8::try_from(month).ok()?,
            u8::try_from(day).ok()?,
        )
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Why a text is not a date ([`Date::try_parse`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    #[error("`{0}` is not a date: expected YYYY-MM-DD")]
    Shape(String),
    #[error("`{text}` is not a date: month {month} is not 1 to 12")]
    Month { text: String, month: u8 },
    #[error("`{text}` is not a date: {month} {year} has {days} days")]
    Day {
        text: String,
        month: &'static str,
        year: u16,
        days: u8,
    },
}

const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

/// Why a payload was rejected (mirrors the WIT `error-kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Malformed,
    InvalidShape,
    InvalidValue,
    PlatformError,
    MissingContext,
    Unsupported,
}

/// A typed rejection naming the offending field with a JSON-pointer-like path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PluginError {
    pub kind: ErrorKind,
    pub path: String,
    pub message: String,
}

impl PluginError {
    pub fn new(kind: ErrorKind, path: impl Into<String>, message: impl Into<String>) -> Self {
        PluginError {
            kind,
            path: path.into(),
            message: message.into(),
        }
    }
    pub fn shape(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidShape, path, message)
    }
    pub fn value(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidValue, path, message)
    }
    /// A JSON syntax error, with serde_json's line/column in the message.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Malformed, "", message)
    }
}

/// Snapshot or delta (docs/contracts.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowKind {
    Snapshot,
    Delta,
}

/// Index into a batch's string table.
pub type Str = u32;

/// One normalized row; string fields index [`RowBatch::strings`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub kind: RowKind,
    pub account_id: Option<Str>,
    pub campaign_id: Option<Str>,
    pub campaign_name: Option<Str>,
    pub ad_group_id: Option<Str>,
    /// Ad group (ad set) display name.
    pub ad_group_name: Option<Str>,
    pub ad_id: Option<Str>,
    /// Ad display name.
    pub ad_name: Option<Str>,
    /// Canonical breakdown key, part of the row's identity (build it with
    /// [`breakdown_key`]); `None` for a row without a breakdown.
    pub breakdown: Option<Str>,
    /// Reporting day (for an event row, the UTC day of `event_at_ms`).
    pub date: Date,
    pub hour: Option<u8>,
    /// An event's instant (ms since the Unix epoch), e.g. a lead's creation
    /// time: the host files the row under that instant's day in the
    /// pipeline's time zone, and `date`/`hour` are not used.
    pub event_at_ms: Option<i64>,
    pub currency: Option<Str>,
    pub impressions: u64,
    pub clicks: u64,
    pub spend_micros: i64,
    pub conversions_micros: i64,
    pub conversion_value_micros: i64,
    pub observed_at_ms: Option<i64>,
    pub dedup_key: Option<Str>,
}

impl Row {
    /// A snapshot row of `campaign` for `date` with every other field empty
    /// or zero: fill what the payload has with struct update syntax,
    /// `Row { clicks, ..Row::snapshot(campaign, date) }`.
    pub fn snapshot(campaign: Str, date: Date) -> Row {
        Row {
            kind: RowKind::Snapshot,
            account_id: None,
            campaign_id: Some(campaign),
            campaign_name: None,
            ad_group_id: None,
            ad_group_name: None,
            ad_id: None,
            ad_name: None,
            breakdown: None,
            date,
            hour: None,
            event_at_ms: None,
            currency: None,
            impressions: 0,
            clicks: 0,
            spend_micros: 0,
            conversions_micros: 0,
            conversion_value_micros: 0,
            observed_at_ms: None,
            dedup_key: None,
        }
    }

    /// A delta row applied once per `dedup_key`, for an event at `at_ms`
    /// (filed under that instant's day in the pipeline's time zone).
    pub fn event_delta(dedup_key: Str, at_ms: i64) -> Row {
        let date = Date::from_days_since_epoch(at_ms.div_euclid(86_400_000)).unwrap_or(Date {
            year: 1970,
            month: 1,
            day: 1,
        });
        Row {
            kind: RowKind::Delta,
            campaign_id: None,
            event_at_ms: Some(at_ms),
            observed_at_ms: Some(at_ms),
            dedup_key: Some(dedup_key),
            ..Row::snapshot(0, date)
        }
    }
}

/// An extra additive metric of row `row`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extra {
    pub row: u32,
    pub name: Str,
    pub value_micros: i64,
}

/// A planned HTTP request (mirrors the WIT `http-request`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    /// Query pairs, joined into the wire query by [`HttpRequest::query_string`]
    /// and sent by the host exactly so: values go out as written, only what
    /// cannot stand inside one `key=value` pair is escaped (space, `&`, `#`,
    /// quotes, brackets, non-ASCII, a `%` that starts no escape), so
    /// percent-encode what you mean literally (`%25`, `%2B`) and leave syntax
    /// such as Rest.li's `List(urn%3Ali%3A...)` and `(start:(year:2026))` raw.
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub credential: CredentialSlot,
}

impl HttpRequest {
    /// The query exactly as it goes on the wire (without `?`).
    pub fn query_string(&self) -> String {
        query_string(&self.query)
    }
}

/// Join query pairs into a wire query (without `?`): values go out as written,
/// only what cannot stand inside one `key=value` pair is escaped (space, `&`,
/// `#`, quotes, brackets, non-ASCII, `=` in a key, a `%` that starts no escape).
pub fn query_string(pairs: &[(String, String)]) -> String {
    let mut query = String::new();
    for (key, value) in pairs {
        if !query.is_empty() {
            query.push('&');
        }
        escape_into(&mut query, key, true);
        query.push('=');
        escape_into(&mut query, value, false);
    }
    query
}

fn escape_into(out: &mut String, text: &str, key: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = text.as_bytes();
    let hex = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_hexdigit);
    for (i, &b) in bytes.iter().enumerate() {
        let keep = match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => true,
            b'!' | b'$' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b':' | b'@' | b'/' | b'?' => {
                true
            }
            b'=' => !key,
            b'%' => hex(i + 1) && hex(i + 2),
            _ => false,
        };
        if keep {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

/// The canonical breakdown key of a row: dimensions sorted by name,
/// `name=value` joined by `|` (`age=18-24|gender=female`); `None` when there
/// are none. `|` and `=` in a value are percent-escaped so keys stay unambiguous.
pub fn breakdown_key<'a>(
    dimensions: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<String> {
    let mut parts: Vec<(&str, &str)> = dimensions.into_iter().collect();
    if parts.is_empty() {
        return None;
    }
    parts.sort_unstable();
    let mut key = String::new();
    for (name, value) in parts {
        if !key.is_empty() {
            key.push('|');
        }
        key.push_str(name);
        key.push('=');
        for c in value.chars() {
            match c {
                '|' => key.push_str("%7C"),
                '=' => key.push_str("%3D"),
                '%' => key.push_str("%25"),
                c => key.push(c),
            }
        }
    }
    Some(key)
}

/// Where the host injects the credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSlot {
    None,
    Bearer,
    Header(String),
    Query(String),
}

/// The parse result of one payload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RowBatch {
    pub strings: Vec<String>,
    pub rows: Vec<Row>,
    pub extras: Vec<Extra>,
    pub notices: Vec<String>,
    pub next_page: Option<HttpRequest>,
}

impl RowBatch {
    /// The string behind an index (empty if out of range).
    pub fn str(&self, index: Str) -> &str {
        self.strings
            .get(index as usize)
            .map(String::as_str)
            .unwrap_or("")
    }

    /// Extra metrics of row `row` as `(name, value_micros)`.
    pub fn extras_of(&self, row: u32) -> impl Iterator<Item = (&str, i64)> + '_ {
        self.extras
            .iter()
            .filter(move |e| e.row == row)
            .map(|e| (self.str(e.name), e.value_micros))
    }
}

/// Builds a [`RowBatch`], interning every string once. String 0 is always
/// `""`, which the interface reads as "absent".
pub struct BatchBuilder {
    batch: RowBatch,
    /// Indices into `batch.strings`, hashed by the string they name: each
    /// string is stored once (no second copy as a map key).
    index: hashbrown::HashTable<Str>,
    hasher: std::collections::hash_map::RandomState,
    /// The last index of each [`Repeating`] field.
    recent: [Str; Repeating::COUNT],
    /// The extra-metric names seen so far, newest last (at most
    /// [`EXTRA_NAMES_KEPT`]): a page names the same few metrics on every row.
    extra_names: Vec<Str>,
}

/// How many extra-metric names [`BatchBuilder::extra`] finds without hashing.
const EXTRA_NAMES_KEPT: usize = 8;

/// Row fields whose value tends to repeat from one row to the next, for
/// [`BatchBuilder::intern_repeating`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repeating {
    Account,
    Currency,
    Campaign,
    CampaignName,
    AdGroup,
    AdGroupName,
}

impl Repeating {
    /// How many there are: one past the last variant (keep it last).
    const COUNT: usize = Repeating::AdGroupName as usize + 1;
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl BatchBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder sized for about `rows` rows.
    pub fn with_capacity(rows: usize) -> Self {
        // SipHash with random keys (WASI `random_get` in a component): a
        // payload cannot be crafted to collide every id. (foldhash was tried:
        // its 64x64->128-bit multiply is a software routine on wasm32 and
        // cost more than it saved.)
        let mut builder = BatchBuilder {
            batch: RowBatch {
                strings: Vec::with_capacity(rows + 1),
                rows: Vec::with_capacity(rows),
                ..RowBatch::default()
            },
            index: hashbrown::HashTable::with_capacity(rows + 1),
            hasher: std::collections::hash_map::RandomState::new(),
            recent: [0; Repeating::COUNT],
            extra_names: Vec::new(),
        };
        builder.intern("");
        builder
    }

    /// Intern `s`, returning its index.
    pub fn intern(&mut self, s: &str) -> Str {
        let hash = self.hasher.hash_one(s);
        let strings = &mut self.batch.strings;
        if let Some(&i) = self.index.find(hash, |&i| strings[i as usize] == s) {
            return i;
        }
        let i = strings.len() as Str;
        strings.push(s.to_owned());
        let hasher = &self.hasher;
        self.index
            .insert_unique(hash, i, |&j| hasher.hash_one(strings[j as usize].as_str()));
        i
    }

    /// Intern the value of a field that often repeats row after row (the
    /// account and currency of every row, the campaign and ad group of a
    /// page sorted by them): the builder remembers each such field's last
    /// index, and an unchanged value is found with one comparison instead of
    /// hashing it again.
    pub fn intern_repeating(&mut self, s: &str, field: Repeating) -> Str {
        let last = self.recent[field as usize];
        if self
            .batch
            .strings
            .get(last as usize)
            .is_some_and(|t| t == s)
        {
            return last;
        }
        let index = self.intern(s);
        self.recent[field as usize] = index;
        index
    }

    /// [`BatchBuilder::intern_repeating`] of an optional string.
    pub fn intern_repeating_opt(&mut self, s: Option<&str>, field: Repeating) -> Option<Str> {
        s.map(|s| self.intern_repeating(s, field))
    }

    /// Intern an optional string.
    pub fn intern_opt(&mut self, s: Option<&str>) -> Option<Str> {
        s.map(|s| self.intern(s))
    }

    /// Append a row, returning its index (for [`BatchBuilder::extra`]).
    pub fn push(&mut self, row: Row) -> u32 {
        self.batch.rows.push(row);
        (self.batch.rows.len() - 1) as u32
    }

    /// Attach an extra metric to row `row`; zero values are skipped. The
    /// last few names used are found by comparison, not hashed again (a
    /// page repeats the same metrics row after row).
    pub fn extra(&mut self, row: u32, name: &str, value_micros: i64) {
        if value_micros == 0 {
            return;
        }
        let strings = &self.batch.strings;
        let known = self
            .extra_names
            .iter()
            .rev()
            .copied()
            .find(|&i| strings[i as usize] == name);
        let name = match known {
            Some(index) => index,
            None => {
                let index = self.intern(name);
                if self.extra_names.len() == EXTRA_NAMES_KEPT {
                    self.extra_names.remove(0);
                }
                self.extra_names.push(index);
                index
            }
        };
        self.batch.extras.push(Extra {
            row,
            name,
            value_micros,
        });
    }

    /// Record something acknowledged but not turned into rows.
    pub fn notice(&mut self, text: impl Into<String>) {
        self.batch.notices.push(text.into());
    }

    /// Set the next page to fetch.
    pub fn next_page(&mut self, request: HttpRequest) {
        self.batch.next_page = Some(request);
    }

    pub fn finish(self) -> RowBatch {
        self.batch
    }
}

/// Looks up a pipeline option by name.
pub fn option<'a>(options: &'a [(String, String)], name: &str) -> Option<&'a str> {
    options
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Host-supplied context of a parse call (mirrors the WIT `parse-context`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParseContext {
    pub options: Vec<(String, String)>,
    pub account_id: Option<String>,
    pub currency: Option<String>,
    pub received_at_ms: i64,
}

impl ParseContext {
    /// A pipeline option by name.
    pub fn option(&self, name: &str) -> Option<&str> {
        option(&self.options, name)
    }
}

/// How the host verifies webhook deliveries (mirrors the WIT `signature-scheme`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureScheme {
    None,
    /// A header carries hex HMAC-SHA256(secret, `signed_prefix` + body),
    /// optionally preceded by `header_prefix`.
    HmacSha256 {
        header: String,
        header_prefix: String,
        signed_prefix: String,
    },
    HmacSha256Timestamped {
        header: String,
        max_age_seconds: u32,
    },
}

/// What an adapter is (mirrors the WIT `adapter-info`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterInfo {
    pub name: String,
    pub version: String,
    pub platform: String,
    pub signature: SignatureScheme,
    pub allowed_hosts: Vec<String>,
    pub default_lookback_days: u32,
    /// Options a pipeline may set; the host refuses any other.
    pub options: Vec<OptionSpec>,
    /// Platform API versions spoken, newest first (the first is the default).
    pub api_versions: Vec<ApiVersion>,
    /// Extra metric names the plugin may emit whatever the options.
    pub extra_metrics: Vec<String>,
}

/// The type of a declared option's value (mirrors the WIT `option-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionType {
    String,
    Integer,
    Decimal,
    Boolean,
    /// Comma-separated strings.
    List,
}

/// One option a pipeline may set (mirrors the WIT `option-spec`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionSpec {
    pub name: String,
    pub kind: OptionType,
    pub default: Option<String>,
    pub required: bool,
    pub help: String,
}

impl OptionSpec {
    /// An optional option with no default.
    pub fn new(name: &str, kind: OptionType, help: &str) -> Self {
        OptionSpec {
            name: name.into(),
            kind,
            default: None,
            required: false,
            help: help.into(),
        }
    }

    /// The same option with a default value.
    pub fn default_value(mut self, value: &str) -> Self {
        self.default = Some(value.into());
        self
    }
}

/// A platform API version and its announced end of life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiVersion {
    pub name: String,
    pub sunset: Option<Date>,
}

impl ApiVersion {
    /// A version with its sunset date (`YYYY-MM-DD`), or none when unannounced.
    pub fn new(name: &str, sunset: Option<&str>) -> Self {
        ApiVersion {
            name: name.into(),
            sunset: sunset.and_then(Date::parse),
        }
    }
}

/// The `api_version` a request should use: the pipeline's option, else the
/// plugin's first (newest) declared version.
pub fn api_version<'a>(options: &'a [(String, String)], info: &'a AdapterInfo) -> &'a str {
    option(options, "api_version")
        .or_else(|| info.api_versions.first().map(|v| v.name.as_str()))
        .unwrap_or("")
}

/// How to answer a verification handshake (mirrors the WIT `handshake-plan`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakePlan {
    EchoIfToken { token: String, challenge: String },
    HmacChallenge(String),
    Reject(String),
}

/// What to pull (mirrors the WIT `pull-request`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRequest {
    pub account_id: String,
    pub from: Date,
    pub to: Date,
    pub base_url: Option<String>,
    pub options: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_and_validate() {
        assert_eq!(Date::parse("2026-11-01"), Date::new(2026, 11, 1));
        assert_eq!(Date::parse("2026-11-01 00:00:00"), Date::new(2026, 11, 1));
        assert_eq!(Date::parse("2024-02-29"), Date::new(2024, 2, 29));
        assert_eq!(Date::parse("2026-02-29"), None);
        assert_eq!(Date::parse("2026-13-01"), None);
        assert_eq!(Date::parse("2026-1-01"), None);
        assert_eq!(Date::parse("2026-11-01x"), None);
        assert_eq!(Date::parse("+026-11-01"), None);
    }

    #[test]
    fn a_text_that_is_no_date_says_why() {
        let why = |text: &str| Date::try_parse(text).map_err(|e| e.to_string()).err();
        assert_eq!(
            why("2026-11-31").as_deref(),
            Some("`2026-11-31` is not a date: November 2026 has 30 days")
        );
        assert_eq!(
            why("2026-02-29").as_deref(),
            Some("`2026-02-29` is not a date: February 2026 has 28 days")
        );
        assert_eq!(
            why("2026-13-01").as_deref(),
            Some("`2026-13-01` is not a date: month 13 is not 1 to 12")
        );
        assert_eq!(
            why("11/01/2026").as_deref(),
            Some("`11/01/2026` is not a date: expected YYYY-MM-DD")
        );
        assert_eq!(why("2024-02-29"), None);
    }

    #[test]
    fn epoch_days_round_trip() {
        let d = Date::new(2026, 11, 25).expect("valid date");
        assert_eq!(
            Date::new(1970, 1, 1)
                .expect("valid date")
                .days_since_epoch(),
            0
        );
        assert_eq!(d.days_since_epoch(), 20_782);
        for days in [-1000, 0, 59, 60, 365, 11_000, 20_782, 40_000] {
            let date = Date::from_days_since_epoch(days).expect("valid date");
            assert_eq!(date.days_since_epoch(), days);
        }
    }

    #[test]
    fn breakdown_keys_are_canonical() {
        assert_eq!(breakdown_key([]), None);
        assert_eq!(
            breakdown_key([("gender", "female"), ("age", "18-24")]).as_deref(),
            Some("age=18-24|gender=female")
        );
        assert_eq!(
            breakdown_key([("x", "a|b=c%")]).as_deref(),
            Some("x=a%7Cb%3Dc%25")
        );
    }

    #[test]
    fn query_pairs_keep_rest_li_syntax() {
        let r = HttpRequest {
            method: "GET".into(),
            url: "https://api.linkedin.com/rest/adAnalytics".into(),
            query: vec![
                (
                    "accounts".into(),
                    "List(urn%3Ali%3AsponsoredAccount%3A1)".into(),
                ),
                (
                    "dateRange".into(),
                    "(start:(year:2026,month:11,day:1))".into(),
                ),
                ("t".into(), "{\"a\": 1}&x".into()),
            ],
            headers: vec![],
            body: None,
            credential: CredentialSlot::None,
        };
        assert_eq!(
            r.query_string(),
            "accounts=List(urn%3Ali%3AsponsoredAccount%3A1)&dateRange=(start:(year:2026,month:11,day:1))\
             &t=%7B%22a%22:%201%7D%26x"
        );
    }

    #[test]
    fn repeating_fields_intern_like_any_other() {
        let mut b = BatchBuilder::new();
        let a = b.intern_repeating("act_1", Repeating::Account);
        assert_eq!(b.intern_repeating("act_1", Repeating::Account), a);
        // Another field with the same text: the same string.
        assert_eq!(b.intern_repeating("act_1", Repeating::Campaign), a);
        let c = b.intern_repeating("act_2", Repeating::Account);
        assert_ne!(a, c);
        // Back to a value seen before: the table's index, not a second copy.
        assert_eq!(b.intern_repeating("act_1", Repeating::Account), a);
        assert_eq!(b.intern("act_2"), c);
        assert_eq!(b.intern_repeating("", Repeating::Currency), 0);
        assert_eq!(b.finish().strings, vec!["", "act_1", "act_2"]);
    }

    #[test]
    fn extra_names_are_interned_once_whatever_their_number() {
        let mut b = BatchBuilder::new();
        // More distinct names than the builder keeps at hand, in an order
        // that keeps evicting them, mixed with a name interned elsewhere.
        let leads = b.intern("leads");
        let names: Vec<String> = (0..EXTRA_NAMES_KEPT + 3).map(|i| format!("m{i}")).collect();
        for row in 0..3u32 {
            for (i, name) in names.iter().enumerate().rev() {
                b.extra(row, name, i as i64 + 1);
            }
            b.extra(row, "leads", 7);
            b.extra(row, "m0", 0); // zero: skipped
        }
        let batch = b.finish();
        let mut strings = batch.strings.clone();
        strings.sort();
        strings.dedup();
        assert_eq!(strings.len(), batch.strings.len(), "a name stored twice");
        assert_eq!(batch.strings.len(), 2 + names.len());
        assert_eq!(batch.str(leads), "leads");
        for row in 0..3u32 {
            let mut got: Vec<(&str, i64)> = batch.extras_of(row).collect();
            got.sort();
            let mut want: Vec<(&str, i64)> = names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_str(), i as i64 + 1))
                .chain([("leads", 7)])
                .collect();
            want.sort();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn builder_interns_strings_once() {
        let mut b = BatchBuilder::new();
        let a = b.intern("act_1");
        assert_eq!(b.intern("act_1"), a);
        assert_ne!(b.intern("act_2"), a);
        assert_eq!(b.intern(""), 0);
        assert_eq!(
            b.finish().strings,
            vec![String::new(), "act_1".to_owned(), "act_2".to_owned()]
        );
        // A sized builder, grown well past its size, still finds every string
        // (the absent one included) at its first index.
        assert_eq!(BatchBuilder::with_capacity(1000).intern(""), 0);
        let mut b = BatchBuilder::with_capacity(4);
        let ids: Vec<Str> = (0..1000).map(|i| b.intern(&format!("ad-{i}"))).collect();
        assert_eq!(b.intern(""), 0);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(b.intern(&format!("ad-{i}")), *id);
        }
        assert_eq!(b.finish().strings.len(), 1001);
    }
}
