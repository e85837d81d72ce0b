//! From a plugin's row batch to bus-ready rows: resolve the string table,
//! fill the context the payload lacks (account, currency), validate what the
//! store relies on, stamp observation times. Pure: no I/O.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::config::{is_currency, is_slug};
use crate::insights::{BASE_METRICS, RATIO_METRICS};
use crate::plugin::bindings::adapter::adpipe::plugin::types as wit;
use crate::row::{Row, RowKind};
use chrono_tz::Tz;

/// Context the request or pipeline supplies.
#[derive(Clone, Debug)]
pub struct IngestContext<'a> {
    pub platform: &'a str,
    pub adapter: &'a str,
    pub adapter_version: &'a str,
    pub account_id: Option<&'a str>,
    pub currency: Option<&'a str>,
    /// The pipeline's time zone: event rows are filed under the day of their
    /// instant here (reports are dated in the ad account's zone already).
    pub timezone: Tz,
}

/// Why a batch cannot go on the bus.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    /// The payload lacks something only the caller can supply (400).
    #[error("{message}")]
    Client { code: &'static str, message: String },
    /// The plugin broke the interface contract (500).
    #[error("the plugin returned an invalid batch: {0}")]
    Plugin(String),
}

fn client(code: &'static str, message: String) -> NormalizeError {
    NormalizeError::Client { code, message }
}

/// Strictly increasing observation stamps in microseconds, so two payloads
/// received in the same microsecond still order.
#[derive(Default)]
pub struct Stamp {
    last: AtomicI64,
}

impl Stamp {
    /// The next stamp: now, or one past the previous stamp if the clock has not moved.
    pub fn next(&self) -> i64 {
        let now = chrono::Utc::now().timestamp_micros();
        let mut prev = self.last.load(Ordering::Relaxed);
        loop {
            let next = now.max(prev + 1);
            match self
                .last
                .compare_exchange_weak(prev, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(actual) => prev = actual,
            }
        }
    }
}

/// Every column of a batch must have one entry per row.
fn check_columns(c: &wit::RowColumns) -> Result<usize, NormalizeError> {
    let n = c.kind.len();
    let lengths = [
        ("bucket", c.bucket.len()),
        ("day", c.day.len()),
        ("hour", c.hour.len()),
        ("event-at-ms", c.event_at_ms.len()),
        ("account-id", c.account_id.len()),
        ("campaign-id", c.campaign_id.len()),
        ("campaign-name", c.campaign_name.len()),
        ("ad-group-id", c.ad_group_id.len()),
        ("ad-group-name", c.ad_group_name.len()),
        ("ad-id", c.ad_id.len()),
        ("ad-name", c.ad_name.len()),
        ("breakdown", c.breakdown.len()),
        ("currency", c.currency.len()),
        ("dedup-key", c.dedup_key.len()),
        ("impressions", c.impressions.len()),
        ("clicks", c.clicks.len()),
        ("spend-micros", c.spend_micros.len()),
        ("conversions-micros", c.conversions_micros.len()),
        ("conversion-value-micros", c.conversion_value_micros.len()),
        ("observed-at-ms", c.observed_at_ms.len()),
    ];
    match lengths.iter().find(|(_, len)| *len != n) {
        Some((column, len)) => Err(NormalizeError::Plugin(format!(
            "column `{column}` has {len} entries for {n} rows"
        ))),
        None => Ok(n),
    }
}

/// Turn a plugin batch into rows.
pub fn normalize(
    batch: &wit::RowBatch,
    ctx: &IngestContext<'_>,
    stamp: i64,
) -> Result<Vec<Row>, NormalizeError> {
    let strings = &batch.strings;
    let columns = &batch.rows;
    let n = check_columns(columns)?;
    if n > 0 && strings.first().is_none_or(|s| !s.is_empty()) {
        return Err(NormalizeError::Plugin(
            "string 0 must be the empty string (it means absent)".into(),
        ));
    }
    let get = |i: u32, what: &str, row: usize| -> Result<&str, NormalizeError> {
        strings.get(i as usize).map(String::as_str).ok_or_else(|| {
            NormalizeError::Plugin(format!(
                "row {row}: {what} index {i} is outside the string table"
            ))
        })
    };
    // Index 0 is absent; an empty string elsewhere is absent too.
    let opt = |i: u32, what: &str, row: usize| -> Result<Option<String>, NormalizeError> {
        if i == 0 {
            return Ok(None);
        }
        get(i, what, row).map(|s| (!s.is_empty()).then(|| s.to_owned()))
    };
    let mut extras: Vec<BTreeMap<String, i64>> = vec![BTreeMap::new(); n];
    let e = &batch.extras;
    if e.name.len() != e.row.len() || e.value_micros.len() != e.row.len() {
        return Err(NormalizeError::Plugin(
            "extra metric columns differ in length".into(),
        ));
    }
    for ((&row, &name), &value) in e.row.iter().zip(&e.name).zip(&e.value_micros) {
        let row = row as usize;
        let name = get(name, "extra metric name", row)?;
        let slot = extras.get_mut(row).ok_or_else(|| {
            NormalizeError::Plugin(format!(
                "extra metric `{name}` names row {row}, which does not exist"
            ))
        })?;
        if !is_slug(name)
            || name.contains('-')
            || BASE_METRICS.contains(&name)
            || RATIO_METRICS.contains(&name)
        {
            return Err(NormalizeError::Plugin(format!(
                "`{name}` is not a valid extra metric name"
            )));
        }
        *slot.entry(name.to_owned()).or_default() += value;
    }

    let mut rows = Vec::with_capacity(n);
    for (i, extras) in extras.into_iter().enumerate() {
        let kind = match columns.kind[i] {
            wit::RowKind::Snapshot => RowKind::Snapshot,
            wit::RowKind::Delta => RowKind::Delta,
        };
        let campaign_id = opt(columns.campaign_id[i], "campaign id", i)?;
        let (date, hour) = bucket(columns, i, ctx.timezone)?;
        if !STORABLE_DAYS.contains(&date) {
            return Err(client(
                "invalid_value",
                format!(
                    "row {i}: date {} is outside 1970-01-01..2149-06-06, the days adpipe can store",
                    day_text(date)
                ),
            ));
        }
        let describe = || {
            format!(
                "row {i} (campaign {}, {})",
                campaign_id.as_deref().unwrap_or("?"),
                day_text(date)
            )
        };
        let account_id = match opt(columns.account_id[i], "account id", i)? {
            Some(a) => a,
            None => match ctx.account_id {
                Some(a) => a.to_owned(),
                None if kind == RowKind::Delta => String::new(),
                None => {
                    return Err(client(
                        "missing_account",
                        format!(
                        "{} names no account: pass ?account_id= or set account_id on the pipeline",
                        describe()
                    ),
                    ))
                }
            },
        };
        let currency =
            opt(columns.currency[i], "currency", i)?.or_else(|| ctx.currency.map(str::to_owned));
        let spend_micros = columns.spend_micros[i];
        let conversion_value_micros = columns.conversion_value_micros[i];
        let has_money = spend_micros != 0 || conversion_value_micros != 0;
        match &currency {
            Some(c) if !is_currency(c) => {
                return Err(client(
                    "invalid_value",
                    format!("{}: `{c}` is not an ISO 4217 currency code", describe()),
                ))
            }
            None if kind == RowKind::Snapshot || has_money => {
                return Err(client(
                    "missing_currency",
                    format!(
                        "{} has no currency: pass ?currency=XXX or set currency on the pipeline",
                        describe()
                    ),
                ))
            }
            _ => {}
        }
        let dedup_key = opt(columns.dedup_key[i], "dedup key", i)?;
        match kind {
            RowKind::Snapshot if campaign_id.is_none() => {
                return Err(NormalizeError::Plugin(format!(
                    "row {i}: a snapshot row must name its campaign"
                )))
            }
            RowKind::Delta if dedup_key.is_none() => {
                return Err(NormalizeError::Plugin(format!(
                    "row {i}: a delta row must carry a dedup key"
                )))
            }
            _ => {}
        }
        let count = |v: u64, what: &str| {
            i64::try_from(v).map_err(|_| {
                client(
                    "invalid_value",
                    format!("{}: {what} {v} is out of range", describe()),
                )
            })
        };
        let impressions = count(columns.impressions[i], "impressions")?;
        let clicks = count(columns.clicks[i], "clicks")?;
        let observed_at_ms = columns.observed_at_ms[i];
        rows.push(Row {
            kind,
            platform: ctx.platform.to_owned(),
            account_id,
            campaign_id,
            campaign_name: opt(columns.campaign_name[i], "campaign name", i)?,
            ad_group_id: opt(columns.ad_group_id[i], "ad group id", i)?,
            ad_group_name: opt(columns.ad_group_name[i], "ad group name", i)?,
            ad_id: opt(columns.ad_id[i], "ad id", i)?,
            ad_name: opt(columns.ad_name[i], "ad name", i)?,
            breakdown: opt(columns.breakdown[i], "breakdown", i)?,
            date,
            hour,
            currency,
            impressions,
            clicks,
            spend_micros,
            conversions_micros: columns.conversions_micros[i],
            conversion_value_micros,
            extras,
            observed_at_us: if observed_at_ms == 0 {
                stamp
            } else {
                observed_at_ms.saturating_mul(1000)
            },
            dedup_key,
            adapter: ctx.adapter.to_owned(),
            adapter_version: ctx.adapter_version.to_owned(),
        });
    }
    Ok(rows)
}

/// The day (and hour) row `i` is filed under: its reporting day, or the day of
/// its event instant in the pipeline's time zone.
fn bucket(c: &wit::RowColumns, i: usize, tz: Tz) -> Result<(i32, Option<u8>), NormalizeError> {
    match c.bucket[i] {
        wit::BucketKind::Daily => Ok((c.day[i], None)),
        wit::BucketKind::Hourly => {
            let hour = c.hour[i];
            if hour > 23 {
                return Err(NormalizeError::Plugin(format!(
                    "row {i}: hour {hour} is out of range"
                )));
            }
            Ok((c.day[i], Some(hour)))
        }
        wit::BucketKind::Event => {
            let ms = c.event_at_ms[i];
            let instant = chrono::DateTime::from_timestamp_millis(ms).ok_or_else(|| {
                client(
                    "invalid_value",
                    format!("row {i}: event time {ms} ms is not a representable instant"),
                )
            })?;
            let local = instant.with_timezone(&tz).date_naive();
            let days = local
                .signed_duration_since(chrono::NaiveDate::default())
                .num_days();
            Ok((i32::try_from(days).unwrap_or(i32::MIN), None))
        }
    }
}

/// `YYYY-MM-DD` of a day number, or the number when it is no calendar day.
fn day_text(days: i32) -> String {
    adpipe_plugin_sdk::Date::from_days_since_epoch(i64::from(days))
        .map(|d| d.to_string())
        .unwrap_or_else(|| format!("day {days}"))
}

/// The days every store can hold: ClickHouse's `Date` is 1970-01-01 ..=
/// 2149-06-06 (days 0 ..= 65535). A row outside would be accepted and then
/// refused by the store forever.
pub const STORABLE_DAYS: std::ops::RangeInclusive<i32> = 0..=65_535;

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings: 0 "", 1 "act", 2 "c1", 3 "leads", 4 "k", 5 "age=18-24", 6 "EUR".
    fn batch(kinds: &[wit::RowKind]) -> wit::RowBatch {
        let n = kinds.len();
        wit::RowBatch {
            strings: ["", "act", "c1", "leads", "k", "age=18-24", "EUR"]
                .map(String::from)
                .to_vec(),
            rows: wit::RowColumns {
                kind: kinds.to_vec(),
                bucket: vec![wit::BucketKind::Daily; n],
                day: vec![20_758; n],
                hour: vec![0; n],
                event_at_ms: vec![0; n],
                account_id: vec![1; n],
                campaign_id: vec![2; n],
                campaign_name: vec![0; n],
                ad_group_id: vec![0; n],
                ad_group_name: vec![0; n],
                ad_id: vec![0; n],
                ad_name: vec![0; n],
                breakdown: vec![0; n],
                currency: vec![0; n],
                dedup_key: vec![0; n],
                impressions: vec![10; n],
                clicks: vec![1; n],
                spend_micros: vec![5_000_000; n],
                conversions_micros: vec![0; n],
                conversion_value_micros: vec![0; n],
                observed_at_ms: vec![0; n],
            },
            extras: wit::ExtraColumns {
                row: vec![],
                name: vec![],
                value_micros: vec![],
            },
            notices: vec![],
            next_page: None,
        }
    }

    const CTX: IngestContext<'static> = IngestContext {
        platform: "meta",
        adapter: "meta",
        adapter_version: "0.1.0",
        account_id: None,
        currency: None,
        timezone: chrono_tz::UTC,
    };

    #[test]
    fn currency_comes_from_context_or_the_row_is_refused() {
        let b = batch(&[wit::RowKind::Snapshot]);
        let err = normalize(&b, &CTX, 1).expect_err("no currency");
        assert!(
            matches!(
                err,
                NormalizeError::Client {
                    code: "missing_currency",
                    ..
                }
            ),
            "{err}"
        );
        let ctx = IngestContext {
            currency: Some("EUR"),
            ..CTX
        };
        let rows = normalize(&b, &ctx, 7).expect("currency from context");
        assert_eq!(rows[0].currency.as_deref(), Some("EUR"));
        assert_eq!(rows[0].observed_at_us, 7);
        assert_eq!(rows[0].date, 20_758);
        assert_eq!(rows[0].adapter_version, "0.1.0");
        assert_eq!(rows[0].breakdown, None);
    }

    #[test]
    fn dates_no_store_can_hold_are_refused_naming_the_date() {
        let ctx = IngestContext {
            currency: Some("USD"),
            ..CTX
        };
        // Day numbers of 1969-12-31, 1970-01-01, 2149-06-06, 2149-06-07.
        for (day, text, ok) in [
            (-1, "1969-12-31", false),
            (0, "1970-01-01", true),
            (65_535, "2149-06-06", true),
            (65_536, "2149-06-07", false),
        ] {
            let mut b = batch(&[wit::RowKind::Snapshot]);
            b.rows.day[0] = day;
            match normalize(&b, &ctx, 1) {
                Ok(_) => assert!(ok, "{text} accepted"),
                Err(NormalizeError::Client { code, message }) => {
                    assert!(!ok, "{text} refused: {message}");
                    assert_eq!(code, "invalid_value");
                    assert!(message.contains(text), "{message}");
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn plugin_contract_violations_are_not_client_errors() {
        let mut b = batch(&[wit::RowKind::Delta]);
        b.rows.currency[0] = 99;
        assert!(matches!(
            normalize(&b, &CTX, 1),
            Err(NormalizeError::Plugin(_))
        ));
        let mut b = batch(&[wit::RowKind::Delta]);
        b.rows.spend_micros[0] = 0;
        assert!(
            matches!(normalize(&b, &CTX, 1), Err(NormalizeError::Plugin(_))),
            "delta without dedup key"
        );
        b.rows.dedup_key[0] = 4;
        b.extras = wit::ExtraColumns {
            row: vec![0],
            name: vec![3],
            value_micros: vec![1_000_000],
        };
        let rows = normalize(&b, &CTX, 1).expect("lead delta without currency is fine");
        assert_eq!(rows[0].extras["leads"], 1_000_000);
        assert_eq!(rows[0].currency, None);
        let mut short = batch(&[wit::RowKind::Snapshot]);
        short.rows.clicks.clear();
        assert!(matches!(
            normalize(&short, &CTX, 1),
            Err(NormalizeError::Plugin(m)) if m.contains("clicks")
        ));
    }

    #[test]
    fn breakdown_and_names_travel_with_the_row() {
        let mut b = batch(&[wit::RowKind::Snapshot]);
        b.rows.breakdown[0] = 5;
        b.rows.currency[0] = 6;
        let rows = normalize(&b, &CTX, 1).expect("valid");
        assert_eq!(rows[0].breakdown.as_deref(), Some("age=18-24"));
    }

    #[test]
    fn events_are_filed_under_the_day_of_the_pipeline_time_zone() {
        // 2026-11-02T04:30:00Z is 23:30 on 2026-11-01 in New York (EST, UTC-5).
        let instant = chrono::DateTime::parse_from_rfc3339("2026-11-02T04:30:00Z")
            .expect("valid")
            .timestamp_millis();
        let mut b = batch(&[wit::RowKind::Delta]);
        b.rows.bucket[0] = wit::BucketKind::Event;
        b.rows.event_at_ms[0] = instant;
        b.rows.dedup_key[0] = 4;
        b.rows.spend_micros[0] = 0;
        let utc = normalize(&b, &CTX, 1).expect("valid");
        assert_eq!(day_text(utc[0].date), "2026-11-02");
        let ny = IngestContext {
            timezone: "America/New_York".parse().expect("zone"),
            ..CTX
        };
        let rows = normalize(&b, &ny, 1).expect("valid");
        assert_eq!(day_text(rows[0].date), "2026-11-01");
        assert_eq!(rows[0].hour, None);
    }

    #[test]
    fn stamps_strictly_increase() {
        let stamp = Stamp::default();
        let a = stamp.next();
        let b = stamp.next();
        assert!(b > a);
    }
}
