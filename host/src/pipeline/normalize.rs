//! From a plugin's row batch to bus-ready rows: resolve the string table,
//! fill the context the payload lacks (account, currency), validate what the
//! store relies on, stamp observation times. Pure: no I/O.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::config::{is_currency, is_slug};
use crate::insights::{BASE_METRICS, RATIO_METRICS};
use crate::plugin::bindings::adapter::adpipe::plugin::types as wit;
use crate::row::{Row, RowKind};

/// Context the request or pipeline supplies.
#[derive(Clone, Debug, Default)]
pub struct IngestContext<'a> {
    pub platform: &'a str,
    pub adapter: &'a str,
    pub adapter_version: &'a str,
    pub account_id: Option<&'a str>,
    pub currency: Option<&'a str>,
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

/// Turn a plugin batch into rows.
pub fn normalize(
    batch: &wit::RowBatch,
    ctx: &IngestContext<'_>,
    stamp: i64,
) -> Result<Vec<Row>, NormalizeError> {
    let strings = &batch.strings;
    let get = |i: u32, what: &str, row: usize| -> Result<&str, NormalizeError> {
        strings.get(i as usize).map(String::as_str).ok_or_else(|| {
            NormalizeError::Plugin(format!(
                "row {row}: {what} index {i} is outside the string table"
            ))
        })
    };
    let opt = |i: Option<u32>, what: &str, row: usize| -> Result<Option<String>, NormalizeError> {
        i.map(|i| get(i, what, row).map(str::to_owned)).transpose()
    };
    let mut extras: Vec<BTreeMap<String, i64>> = vec![BTreeMap::new(); batch.rows.len()];
    for e in &batch.extras {
        let row = e.row as usize;
        let name = get(e.name, "extra metric name", row)?;
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
        *slot.entry(name.to_owned()).or_default() += e.value_micros;
    }

    let mut rows = Vec::with_capacity(batch.rows.len());
    for (i, (r, extras)) in batch.rows.iter().zip(extras).enumerate() {
        let kind = match r.kind {
            wit::RowKind::Snapshot => RowKind::Snapshot,
            wit::RowKind::Delta => RowKind::Delta,
        };
        let campaign_id = opt(r.campaign_id, "campaign id", i)?;
        let date = sdk_date(r.date).ok_or_else(|| {
            client(
                "invalid_value",
                format!(
                    "row {i}: {:04}-{:02}-{:02} is not a valid date",
                    r.date.year, r.date.month, r.date.day
                ),
            )
        })?;
        if !STORABLE_DAYS.contains(&date) {
            return Err(client(
                "invalid_value",
                format!(
                    "row {i}: date {:04}-{:02}-{:02} is outside 1970-01-01..2149-06-06, the days adpipe can store",
                    r.date.year, r.date.month, r.date.day
                ),
            ));
        }
        if r.hour.is_some_and(|h| h > 23) {
            return Err(NormalizeError::Plugin(format!(
                "row {i}: hour {:?} is out of range",
                r.hour
            )));
        }
        let describe = || {
            format!(
                "row {i} (campaign {}, {})",
                campaign_id.as_deref().unwrap_or("?"),
                adpipe_plugin_sdk::Date::from_days_since_epoch(i64::from(date))
                    .map(|d| d.to_string())
                    .unwrap_or_default()
            )
        };
        let account_id = match opt(r.account_id, "account id", i)? {
            Some(a) if !a.is_empty() => a,
            _ => match ctx.account_id {
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
        let currency = opt(r.currency, "currency", i)?.or_else(|| ctx.currency.map(str::to_owned));
        let has_money = r.spend_micros != 0 || r.conversion_value_micros != 0;
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
        let dedup_key = opt(r.dedup_key, "dedup key", i)?;
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
        let impressions = count(r.impressions, "impressions")?;
        let clicks = count(r.clicks, "clicks")?;
        rows.push(Row {
            kind,
            platform: ctx.platform.to_owned(),
            account_id,
            campaign_id,
            campaign_name: opt(r.campaign_name, "campaign name", i)?,
            ad_group_id: opt(r.ad_group_id, "ad group id", i)?,
            ad_id: opt(r.ad_id, "ad id", i)?,
            date,
            hour: r.hour,
            currency,
            impressions,
            clicks,
            spend_micros: r.spend_micros,
            conversions_micros: r.conversions_micros,
            conversion_value_micros: r.conversion_value_micros,
            extras,
            observed_at_us: r
                .observed_at_ms
                .map(|ms| ms.saturating_mul(1000))
                .unwrap_or(stamp),
            dedup_key,
            adapter: ctx.adapter.to_owned(),
            adapter_version: ctx.adapter_version.to_owned(),
        });
    }
    Ok(rows)
}

/// The days every store can hold: ClickHouse's `Date` is 1970-01-01 ..=
/// 2149-06-06 (days 0 ..= 65535). A row outside would be accepted and then
/// refused by the store forever.
pub const STORABLE_DAYS: std::ops::RangeInclusive<i32> = 0..=65_535;

fn sdk_date(d: wit::Date) -> Option<i32> {
    adpipe_plugin_sdk::Date::new(d.year, d.month, d.day)
        .and_then(|d| i32::try_from(d.days_since_epoch()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: wit::RowKind) -> wit::Row {
        wit::Row {
            kind,
            account_id: Some(0),
            campaign_id: Some(1),
            campaign_name: None,
            ad_group_id: None,
            ad_id: None,
            date: wit::Date {
                year: 2026,
                month: 11,
                day: 1,
            },
            hour: None,
            currency: None,
            impressions: 10,
            clicks: 1,
            spend_micros: 5_000_000,
            conversions_micros: 0,
            conversion_value_micros: 0,
            observed_at_ms: None,
            dedup_key: None,
        }
    }

    fn batch(rows: Vec<wit::Row>) -> wit::RowBatch {
        wit::RowBatch {
            strings: vec!["act".into(), "c1".into(), "leads".into(), "k".into()],
            rows,
            extras: vec![],
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
    };

    #[test]
    fn currency_comes_from_context_or_the_row_is_refused() {
        let b = batch(vec![row(wit::RowKind::Snapshot)]);
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
    }

    #[test]
    fn dates_no_store_can_hold_are_refused_naming_the_date() {
        let ctx = IngestContext {
            currency: Some("USD"),
            ..CTX
        };
        for (year, month, day, ok) in [
            (1969, 12, 31, false),
            (1970, 1, 1, true),
            (2149, 6, 6, true),
            (2149, 6, 7, false),
            (9999, 12, 31, false),
        ] {
            let mut r = row(wit::RowKind::Snapshot);
            r.date = wit::Date { year, month, day };
            match normalize(&batch(vec![r]), &ctx, 1) {
                Ok(_) => assert!(ok, "{year}-{month}-{day} accepted"),
                Err(NormalizeError::Client { code, message }) => {
                    assert!(!ok, "{year}-{month}-{day} refused: {message}");
                    assert_eq!(code, "invalid_value");
                    assert!(
                        message.contains(&format!("{year:04}-{month:02}-{day:02}")),
                        "{message}"
                    );
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn plugin_contract_violations_are_not_client_errors() {
        let mut r = row(wit::RowKind::Delta);
        r.currency = Some(99);
        assert!(matches!(
            normalize(&batch(vec![r]), &CTX, 1),
            Err(NormalizeError::Plugin(_))
        ));
        let mut d = row(wit::RowKind::Delta);
        d.spend_micros = 0;
        assert!(
            matches!(
                normalize(&batch(vec![d]), &CTX, 1),
                Err(NormalizeError::Plugin(_))
            ),
            "delta without dedup key"
        );
        d.dedup_key = Some(3);
        let mut b = batch(vec![d]);
        b.extras.push(wit::ExtraMetric {
            row: 0,
            name: 2,
            value_micros: 1_000_000,
        });
        let rows = normalize(&b, &CTX, 1).expect("lead delta without currency is fine");
        assert_eq!(rows[0].extras["leads"], 1_000_000);
        assert_eq!(rows[0].currency, None);
    }

    #[test]
    fn stamps_strictly_increase() {
        let stamp = Stamp::default();
        let a = stamp.next();
        let b = stamp.next();
        assert!(b > a);
    }
}
