//! Helpers every adpipe platform plugin needs, compiled natively and for
//! `wasm32-wasip2` alike, so an adapter's mapping logic is plain Rust that unit
//! tests and benchmarks can call without a WASM runtime.
//!
//! - [`BatchBuilder`] builds the interned row batch the WIT `row-batch` carries.
//! - [`money`] parses platform decimal strings into integer micros (never floats).
//! - [`Date`] parses and validates reporting days.
//! - [`PluginError`] is the typed rejection naming the offending field.

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

use std::collections::HashMap;
use std::fmt;

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
    /// or `YYYY-MM-DDTHH:MM:SS...`), which is ignored.
    pub fn parse(text: &str) -> Option<Date> {
        let bytes = text.as_bytes();
        if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return None;
        }
        if bytes.len() > 10 && bytes[10] != b' ' && bytes[10] != b'T' {
            return None;
        }
        let num = |range: std::ops::Range<usize>| -> Option<u32> {
            let part = text.get(range)?;
            if !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        let year = u16::try_from(num(0..4)?).ok()?;
        let month = u8::try_from(num(5..7)?).ok()?;
        let day = u8::try_from(num(8..10)?).ok()?;
        Date::new(year, month, day)
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

/// Snapshot or delta (DESIGN.md §2).
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
    pub ad_id: Option<Str>,
    pub date: Date,
    pub hour: Option<u8>,
    pub currency: Option<Str>,
    pub impressions: u64,
    pub clicks: u64,
    pub spend_micros: i64,
    pub conversions_micros: i64,
    pub conversion_value_micros: i64,
    pub observed_at_ms: Option<i64>,
    pub dedup_key: Option<Str>,
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
    /// Query pairs, appended to `url` as written: the host escapes only what
    /// cannot stand inside one `key=value` pair (space, `&`, `#`, quotes,
    /// brackets, non-ASCII, a `%` that starts no escape), so percent-encode
    /// what you mean literally (`%25`, `%2B`) and leave syntax such as
    /// Rest.li's `List(urn%3Ali%3A...)` and `(start:(year:2026))` raw.
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub credential: CredentialSlot,
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

/// Builds a [`RowBatch`], interning every string once.
#[derive(Default)]
pub struct BatchBuilder {
    batch: RowBatch,
    index: HashMap<String, Str>,
}

impl BatchBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Intern `s`, returning its index.
    pub fn intern(&mut self, s: &str) -> Str {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.batch.strings.len() as Str;
        self.batch.strings.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
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

    /// Attach an extra metric to row `row`; zero values are skipped.
    pub fn extra(&mut self, row: u32, name: &str, value_micros: i64) {
        if value_micros == 0 {
            return;
        }
        let name = self.intern(name);
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
    HmacSha256Body {
        header: String,
        prefix: String,
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
    fn builder_interns_strings_once() {
        let mut b = BatchBuilder::new();
        let a = b.intern("act_1");
        assert_eq!(b.intern("act_1"), a);
        assert_ne!(b.intern("act_2"), a);
        assert_eq!(
            b.finish().strings,
            vec!["act_1".to_owned(), "act_2".to_owned()]
        );
    }
}
