//! The microsoft adapter for adpipe.
//!
//! It parses reports shaped like `tests/fixtures/report.json`:
//! `{"rows": [{"account", "campaign", "date", "impressions", "clicks",
//! "cost", "currency", "conversions", "revenue"}]}`. Change `Report` and
//! `Line` to your platform's format; keep money exact with `Num::micros`.

use adpipe_plugin_sdk::num::{count_at, micros_at, Num, Text};
use adpipe_plugin_sdk::{
    Adapter, AdapterInfo, BatchBuilder, Date, HttpRequest, ParseContext, PluginError, PullRequest, Row, RowBatch,
    SignatureScheme,
};
use serde::Deserialize;

pub struct Plugin;

impl Adapter for Plugin {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            name: "microsoft".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            platform: "microsoft".into(),
            signature: SignatureScheme::None,
            allowed_hosts: vec![],
            default_lookback_days: 7,
            // Options pipelines may set under [pipelines.options]; the host refuses others.
            options: vec![],
            // Platform API versions spoken, newest first, with sunset dates.
            api_versions: vec![],
            extra_metrics: vec![],
        }
    }

    fn parse_report(body: &[u8], ctx: &ParseContext) -> Result<RowBatch, PluginError> {
        parse_report(body, ctx)
    }

    fn plan_pull(_request: &PullRequest) -> Result<Vec<HttpRequest>, PluginError> {
        Ok(vec![])
    }
}

adpipe_plugin_sdk::export_adapter!(Plugin);

#[derive(Deserialize)]
struct Report<'a> {
    #[serde(borrow)]
    rows: Vec<Line<'a>>,
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    account: Option<Text<'a>>,
    #[serde(borrow)]
    campaign: Text<'a>,
    #[serde(borrow)]
    date: Text<'a>,
    #[serde(borrow, default)]
    impressions: Option<Num<'a>>,
    #[serde(borrow, default)]
    clicks: Option<Num<'a>>,
    #[serde(borrow, default)]
    cost: Option<Num<'a>>,
    #[serde(borrow, default)]
    currency: Option<Text<'a>>,
    #[serde(borrow, default)]
    conversions: Option<Num<'a>>,
    #[serde(borrow, default)]
    revenue: Option<Num<'a>>,
}

/// Parse one report body into snapshot rows.
pub fn parse_report(body: &[u8], ctx: &ParseContext) -> Result<RowBatch, PluginError> {
    // Not JSON: `malformed` with line and column; wrong shape: the field's path.
    let report: Report<'_> = adpipe_plugin_sdk::json::parse(body)?;
    let mut batch = BatchBuilder::with_capacity(report.rows.len());
    for (i, line) in report.rows.iter().enumerate() {
        let at = |field: &str| format!("/rows/{i}/{field}");
        let date = Date::try_parse(&line.date).map_err(|e| PluginError::value(at("date"), e.to_string()))?;
        let count = |v: &Option<Num<'_>>, f: &str| count_at(v.as_ref(), || at(f));
        let micros = |v: &Option<Num<'_>>, f: &str| micros_at(v.as_ref(), || at(f));
        let account = line.account.as_deref().or(ctx.account_id.as_deref());
        let campaign = batch.intern(&line.campaign);
        let row = Row {
            account_id: batch.intern_opt(account),
            currency: batch.intern_opt(line.currency.as_deref()),
            impressions: count(&line.impressions, "impressions")?,
            clicks: count(&line.clicks, "clicks")?,
            spend_micros: micros(&line.cost, "cost")?,
            conversions_micros: micros(&line.conversions, "conversions")?,
            conversion_value_micros: micros(&line.revenue, "revenue")?,
            ..Row::snapshot(campaign, date)
        };
        batch.push(row);
    }
    Ok(batch.finish())
}
