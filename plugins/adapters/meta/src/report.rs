//! Insights responses (`GET /act_{id}/insights`) → snapshot rows.
//!
//! One row per element of `data`: the entity is the finest id present
//! (`ad_id`, else `adset_id`, else `campaign_id`), the bucket `date_start`
//! (which must equal `date_stop`: request `time_increment=1`). Meta omits
//! zero metrics; a missing additive metric is 0. A report with `breakdowns=`
//! (age, gender, country, publisher_platform...) has several rows per entity
//! and day: their dimensions form the row's breakdown key, so each is kept and
//! totals sum across them. Ratios (`cpc`, `ctr`...) and
//! non-additive figures (`reach`, `frequency`) are ignored: adpipe recomputes
//! ratios from sums and never sums reach.
//!
//! Conversions: the action types in option `conversion_action_types` (default
//! `purchase,offsite_conversion.fb_pixel_purchase`) are summed, except that
//! `offsite_conversion.fb_pixel_X` is skipped when `X` is also listed and
//! present (Meta's `X` already includes its pixel events). The same rule
//! applies to `action_values` for the conversion value. Action types in
//! `extra_action_types` become extra metrics `actions_<type>`.

use adpipe_plugin_sdk::money::{parse_count, parse_micros};
use adpipe_plugin_sdk::{
    BatchBuilder, CredentialSlot, Date, ErrorKind, HttpRequest, ParseContext, PluginError,
    Repeating, Row, RowBatch, RowKind,
};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use adpipe_plugin_sdk::num::{Num, Text};

pub const DEFAULT_CONVERSIONS: &str = "purchase,offsite_conversion.fb_pixel_purchase";
pub const DEFAULT_EXTRAS: &str = "link_click,landing_page_view,video_view,lead,post_engagement";
const PIXEL_PREFIX: &str = "offsite_conversion.fb_pixel_";

#[derive(Deserialize)]
struct Paging<'a> {
    #[serde(borrow, default)]
    next: Option<Text<'a>>,
}

/// One element of `data`, the fields this adapter reads (borrowed from the
/// body). Its `actions` and `action_values` are read into [`Scratch`]'s
/// lists, reused from row to row, so a row allocates nothing of its own.
#[derive(Default)]
struct Insight<'a> {
    account_id: Option<Num<'a>>,
    account_currency: Option<Text<'a>>,
    campaign_id: Option<Num<'a>>,
    campaign_name: Option<Text<'a>>,
    adset_id: Option<Num<'a>>,
    adset_name: Option<Text<'a>>,
    ad_id: Option<Num<'a>>,
    ad_name: Option<Text<'a>>,
    date_start: Option<Text<'a>>,
    date_stop: Option<Text<'a>>,
    impressions: Option<Num<'a>>,
    clicks: Option<Num<'a>>,
    spend: Option<Num<'a>>,
    // Breakdown dimensions (`breakdowns=`): each splits an entity-day into
    // several rows, so each is part of the row's identity.
    age: Option<Text<'a>>,
    gender: Option<Text<'a>>,
    country: Option<Text<'a>>,
    region: Option<Text<'a>>,
    dma: Option<Text<'a>>,
    impression_device: Option<Text<'a>>,
    device_platform: Option<Text<'a>>,
    publisher_platform: Option<Text<'a>>,
    platform_position: Option<Text<'a>>,
    product_id: Option<Text<'a>>,
    frequency_value: Option<Text<'a>>,
}

/// The keys of an insight that [`Insight`] keeps; any other is skipped.
#[derive(Clone, Copy, Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    AccountId,
    AccountCurrency,
    CampaignId,
    CampaignName,
    AdsetId,
    AdsetName,
    AdId,
    AdName,
    DateStart,
    DateStop,
    Impressions,
    Clicks,
    Spend,
    Actions,
    ActionValues,
    Age,
    Gender,
    Country,
    Region,
    Dma,
    ImpressionDevice,
    DevicePlatform,
    PublisherPlatform,
    PlatformPosition,
    ProductId,
    FrequencyValue,
    #[serde(other)]
    Other,
}

impl Field {
    /// The key as Meta spells it (for a duplicate-key error).
    fn name(self) -> &'static str {
        match self {
            Field::AccountId => "account_id",
            Field::AccountCurrency => "account_currency",
            Field::CampaignId => "campaign_id",
            Field::CampaignName => "campaign_name",
            Field::AdsetId => "adset_id",
            Field::AdsetName => "adset_name",
            Field::AdId => "ad_id",
            Field::AdName => "ad_name",
            Field::DateStart => "date_start",
            Field::DateStop => "date_stop",
            Field::Impressions => "impressions",
            Field::Clicks => "clicks",
            Field::Spend => "spend",
            Field::Actions => "actions",
            Field::ActionValues => "action_values",
            Field::Age => "age",
            Field::Gender => "gender",
            Field::Country => "country",
            Field::Region => "region",
            Field::Dma => "dma",
            Field::ImpressionDevice => "impression_device",
            Field::DevicePlatform => "device_platform",
            Field::PublisherPlatform => "publisher_platform",
            Field::PlatformPosition => "platform_position",
            Field::ProductId => "product_id",
            Field::FrequencyValue => "frequency_value",
            Field::Other => "",
        }
    }
}

/// What one insight is read into, reused from row to row.
#[derive(Default)]
struct Scratch<'a> {
    insight: Insight<'a>,
    actions: Vec<Action<'a>>,
    action_values: Vec<Action<'a>>,
}

/// Reads one element of `data` into a [`Scratch`], replacing the last one.
/// A key given twice is refused, as a derived struct would.
struct InsightSeed<'s, 'a> {
    scratch: &'s mut Scratch<'a>,
}

impl<'de> DeserializeSeed<'de> for InsightSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for InsightSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an insight object")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        let Scratch {
            insight,
            actions,
            action_values,
        } = self.scratch;
        *insight = Insight::default();
        actions.clear();
        action_values.clear();
        let mut seen = 0u32;
        while let Some(field) = map.next_key::<Field>()? {
            if !matches!(field, Field::Other) {
                let bit = 1u32 << field as u32;
                if seen & bit != 0 {
                    return Err(de::Error::duplicate_field(field.name()));
                }
                seen |= bit;
            }
            let i = &mut *insight;
            match field {
                Field::AccountId => i.account_id = map.next_value()?,
                Field::AccountCurrency => i.account_currency = map.next_value()?,
                Field::CampaignId => i.campaign_id = map.next_value()?,
                Field::CampaignName => i.campaign_name = map.next_value()?,
                Field::AdsetId => i.adset_id = map.next_value()?,
                Field::AdsetName => i.adset_name = map.next_value()?,
                Field::AdId => i.ad_id = map.next_value()?,
                Field::AdName => i.ad_name = map.next_value()?,
                Field::DateStart => i.date_start = map.next_value()?,
                Field::DateStop => i.date_stop = map.next_value()?,
                Field::Impressions => i.impressions = map.next_value()?,
                Field::Clicks => i.clicks = map.next_value()?,
                Field::Spend => i.spend = map.next_value()?,
                Field::Actions => map.next_value_seed(ActionList(&mut *actions))?,
                Field::ActionValues => map.next_value_seed(ActionList(&mut *action_values))?,
                Field::Age => i.age = map.next_value()?,
                Field::Gender => i.gender = map.next_value()?,
                Field::Country => i.country = map.next_value()?,
                Field::Region => i.region = map.next_value()?,
                Field::Dma => i.dma = map.next_value()?,
                Field::ImpressionDevice => i.impression_device = map.next_value()?,
                Field::DevicePlatform => i.device_platform = map.next_value()?,
                Field::PublisherPlatform => i.publisher_platform = map.next_value()?,
                Field::PlatformPosition => i.platform_position = map.next_value()?,
                Field::ProductId => i.product_id = map.next_value()?,
                Field::FrequencyValue => i.frequency_value = map.next_value()?,
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// An `actions` or `action_values` list (`null` counts as empty), appended
/// to a reused `Vec`.
struct ActionList<'s, 'a>(&'s mut Vec<Action<'a>>);

impl<'de> DeserializeSeed<'de> for ActionList<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for ActionList<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of actions")
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        while let Some(action) = seq.next_element::<Action<'de>>()? {
            self.0.push(action);
        }
        Ok(())
    }
}

impl Insight<'_> {
    /// The canonical breakdown key of the row, if the report has breakdowns.
    fn breakdown(&self) -> Option<String> {
        let dimensions = [
            ("age", &self.age),
            ("country", &self.country),
            ("device_platform", &self.device_platform),
            ("dma", &self.dma),
            ("frequency_value", &self.frequency_value),
            ("gender", &self.gender),
            ("impression_device", &self.impression_device),
            ("platform_position", &self.platform_position),
            ("product_id", &self.product_id),
            ("publisher_platform", &self.publisher_platform),
            ("region", &self.region),
        ];
        adpipe_plugin_sdk::breakdown_key(
            dimensions
                .iter()
                .filter_map(|(name, value)| Some((*name, value.as_deref()?))),
        )
    }
}

#[derive(Deserialize)]
struct Action<'a> {
    #[serde(borrow)]
    action_type: Text<'a>,
    #[serde(borrow)]
    value: Num<'a>,
}

/// The extra metric an action type is kept as: `actions_<type>`.
pub fn extra_metric_name(action_type: &str) -> String {
    format!("actions_{}", action_type.trim().replace(['.', '-'], "_"))
}

/// Which action types count, parsed once per call from the pipeline options.
struct Counting<'o> {
    conversions: Vec<&'o str>,
    extras: Vec<(&'o str, String)>,
}

impl<'o> Counting<'o> {
    fn from(ctx: &'o ParseContext) -> Counting<'o> {
        let list = |name: &str, default: &'static str| -> Vec<&'o str> {
            ctx.option(name)
                .unwrap_or(default)
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect()
        };
        let extras = list("extra_action_types", DEFAULT_EXTRAS)
            .into_iter()
            .map(|t| (t, extra_metric_name(t)))
            .collect();
        Counting {
            conversions: list("conversion_action_types", DEFAULT_CONVERSIONS),
            extras,
        }
    }

    /// Sum of the counted action types in `actions`, in micros.
    fn conversions(
        &self,
        actions: &[Action<'_>],
        path: &dyn Fn() -> String,
    ) -> Result<i64, PluginError> {
        let present = |t: &str| actions.iter().any(|a| a.action_type == t);
        let mut total = 0i64;
        for (j, action) in actions.iter().enumerate() {
            let kind = action.action_type.as_ref();
            if !self.conversions.contains(&kind) {
                continue;
            }
            if let Some(base) = kind.strip_prefix(PIXEL_PREFIX) {
                if self.conversions.contains(&base) && present(base) {
                    continue; // already inside `base`
                }
            }
            total =
                total.saturating_add(micros(&action.value, &|| format!("{}/{j}/value", path()))?);
        }
        Ok(total)
    }
}

fn micros(value: &Num<'_>, path: &dyn Fn() -> String) -> Result<i64, PluginError> {
    let text = value.text();
    parse_micros(&text).map_err(|e| PluginError::value(path(), e.to_string()))
}

fn count(value: Option<&Num<'_>>, path: &dyn Fn() -> String) -> Result<u64, PluginError> {
    match value {
        None => Ok(0),
        Some(v) => parse_count(&v.text()).map_err(|e| PluginError::value(path(), e.to_string())),
    }
}

/// Turns each streamed insight into a row.
struct Rows<'c> {
    counting: &'c Counting<'c>,
    fallback_account: Option<&'c str>,
    batch: BatchBuilder,
    /// Why the stream was stopped, when a row (not the JSON) was at fault.
    failure: Option<PluginError>,
}

/// An account id without Meta's `act_` prefix (`act_123` and `123` are the
/// same account).
fn unprefixed(mut account: &str) -> &str {
    while let Some(rest) = account.strip_prefix("act_") {
        account = rest;
    }
    account
}

impl Rows<'_> {
    fn row(&mut self, i: usize, scratch: &Scratch<'_>) -> Result<(), PluginError> {
        let insight = &scratch.insight;
        let at = |field: &str| format!("/data/{i}/{field}");
        let account = insight.account_id.as_ref().map(|a| a.text());
        let account = match account.as_deref().map(unprefixed).or(self.fallback_account) {
            Some(a) if !a.is_empty() => self.batch.intern_repeating(a, Repeating::Account),
            _ => {
                return Err(PluginError::new(
                    ErrorKind::MissingContext,
                    at("account_id"),
                    "no account_id: request the account_id field or pass ?account_id=",
                ))
            }
        };
        let Some(campaign) = insight.campaign_id.as_ref().map(|c| c.text()) else {
            let message = if insight.ad_id.is_some() {
                "missing: an ad-level row (ad_id) without campaign_id; add campaign_id to `fields`"
            } else if insight.adset_id.is_some() {
                "missing: an ad-set-level row (adset_id) without campaign_id; add campaign_id to `fields`"
            } else {
                "missing: a row without campaign_id, adset_id or ad_id (account-level); \
                 request level=campaign, adset or ad with campaign_id in `fields`"
            };
            return Err(PluginError::shape(at("campaign_id"), message));
        };
        let start = insight
            .date_start
            .as_deref()
            .ok_or_else(|| PluginError::shape(at("date_start"), "missing"))?;
        let date = Date::try_parse(start)
            .map_err(|e| PluginError::value(at("date_start"), e.to_string()))?;
        if let Some(stop) = insight.date_stop.as_deref() {
            if stop != start {
                return Err(PluginError::value(
                    at("date_stop"),
                    format!(
                        "covers {start}..{stop}; adpipe needs daily rows: request time_increment=1"
                    ),
                ));
            }
        }
        let spend = match &insight.spend {
            Some(s) => micros(s, &|| at("spend"))?,
            None => 0,
        };
        let actions = &scratch.actions[..];
        let values = &scratch.action_values[..];
        let conversions = self.counting.conversions(actions, &|| at("actions"))?;
        let conversion_value = self.counting.conversions(values, &|| at("action_values"))?;
        let batch = &mut self.batch;
        let row = Row {
            kind: RowKind::Snapshot,
            account_id: Some(account),
            campaign_id: Some(batch.intern_repeating(&campaign, Repeating::Campaign)),
            campaign_name: batch
                .intern_repeating_opt(insight.campaign_name.as_deref(), Repeating::CampaignName),
            ad_group_id: insight
                .adset_id
                .as_ref()
                .map(|a| batch.intern_repeating(&a.text(), Repeating::AdGroup)),
            ad_group_name: batch
                .intern_repeating_opt(insight.adset_name.as_deref(), Repeating::AdGroupName),
            ad_id: insight.ad_id.as_ref().map(|a| batch.intern(&a.text())),
            ad_name: batch.intern_opt(insight.ad_name.as_deref()),
            breakdown: insight.breakdown().map(|key| batch.intern(&key)),
            date,
            hour: None,
            event_at_ms: None,
            currency: batch
                .intern_repeating_opt(insight.account_currency.as_deref(), Repeating::Currency),
            impressions: count(insight.impressions.as_ref(), &|| at("impressions"))?,
            clicks: count(insight.clicks.as_ref(), &|| at("clicks"))?,
            spend_micros: spend,
            conversions_micros: conversions,
            conversion_value_micros: conversion_value,
            observed_at_ms: None,
            dedup_key: None,
        };
        let index = self.batch.push(row);
        for (j, action) in actions.iter().enumerate() {
            if let Some((_, name)) = self
                .counting
                .extras
                .iter()
                .find(|(t, _)| *t == action.action_type)
            {
                let value = micros(&action.value, &|| format!("/data/{i}/actions/{j}/value"))?;
                self.batch.extra(index, name, value);
            }
        }
        Ok(())
    }
}

/// What the page holds besides its rows.
struct PageRest {
    has_data: bool,
    next: Option<String>,
}

/// The insights response object: `data` streamed into [`Rows`], `paging`
/// read, anything else skipped.
struct PageSeed<'r, 'c> {
    rows: &'r mut Rows<'c>,
}

impl<'de> DeserializeSeed<'de> for PageSeed<'_, '_> {
    type Value = PageRest;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<PageRest, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for PageSeed<'_, '_> {
    type Value = PageRest;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an insights response object")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<PageRest, M::Error> {
        let mut rest = PageRest {
            has_data: false,
            next: None,
        };
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match key.as_str() {
                "data" => {
                    if rest.has_data {
                        return Err(de::Error::duplicate_field("data"));
                    }
                    rest.has_data = map.next_value_seed(DataSeed {
                        rows: &mut *self.rows,
                    })?;
                }
                "paging" => {
                    let paging: Option<Paging<'de>> = map.next_value()?;
                    rest.next = paging.and_then(|p| p.next).map(Text::into_owned);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(rest)
    }
}

/// The `data` array, one insight at a time (`null` counts as absent).
struct DataSeed<'r, 'c> {
    rows: &'r mut Rows<'c>,
}

impl<'de> DeserializeSeed<'de> for DataSeed<'_, '_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for DataSeed<'_, '_> {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of insights")
    }
    fn visit_none<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_seq(self)
    }
    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<bool, S::Error> {
        let mut i = 0;
        let mut scratch = Scratch::default();
        while let Some(()) = seq.next_element_seed(InsightSeed {
            scratch: &mut scratch,
        })? {
            if let Err(failure) = self.rows.row(i, &scratch) {
                self.rows.failure = Some(failure);
                return Err(de::Error::custom("row rejected"));
            }
            i += 1;
        }
        Ok(true)
    }
}

/// Run the page through `deserializer`, rejecting anything after it.
fn stream<'de, R: serde_json::de::Read<'de>>(
    mut deserializer: serde_json::Deserializer<R>,
    rows: &mut Rows<'_>,
) -> Result<PageRest, serde_json::Error> {
    let page = PageSeed { rows }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(page)
}

/// Parse one insights response page. The `data` array is streamed: each
/// insight becomes a row as soon as it is read, so the page is never held
/// as a list of parsed insights (no growing `Vec` copied on every doubling,
/// a fraction of the memory touched).
pub fn parse(body: &[u8], ctx: &ParseContext) -> Result<RowBatch, PluginError> {
    let counting = Counting::from(ctx);
    let mut rows = Rows {
        counting: &counting,
        fallback_account: ctx.account_id.as_deref().map(unprefixed),
        // About 700 bytes of JSON per insight.
        batch: BatchBuilder::with_capacity(body.len() / 700),
        failure: None,
    };
    // UTF-8 is checked once for the whole body, not string by string (a
    // `&str` input lets serde_json skip its per-string check); a body that is
    // not UTF-8 goes the byte way, which names where it breaks.
    let page = match std::str::from_utf8(body) {
        Ok(text) => stream(serde_json::Deserializer::from_str(text), &mut rows),
        Err(_) => stream(serde_json::Deserializer::from_slice(body), &mut rows),
    };
    let page = match page {
        Ok(page) => page,
        Err(error) => return Err(rows.failure.take().unwrap_or_else(|| explain(body, error))),
    };
    if !page.has_data {
        return Err(missing_data(body));
    }
    let mut batch = rows.batch;
    if let Some(next) = page.next {
        batch.next_page(HttpRequest {
            method: "GET".into(),
            url: strip_access_token(&next),
            query: vec![],
            headers: vec![],
            body: None,
            credential: CredentialSlot::Query("access_token".into()),
        });
    }
    Ok(batch.finish())
}

/// Meta's `paging.next` embeds the caller's access token: drop it, the host injects its own.
pub fn strip_access_token(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| !kv.is_empty() && kv.split('=').next() != Some("access_token"))
        .collect();
    if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// A body without `data`: Meta's error envelope, or the wrong shape.
fn missing_data(body: &[u8]) -> PluginError {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if let Some(error) = value.get("error") {
        return platform_error(error);
    }
    if !value.is_object() {
        return PluginError::shape(
            "",
            "expected a JSON object with a `data` array (an insights response)",
        );
    }
    PluginError::shape(
        "/data",
        "missing: expected the `data` array of an insights response",
    )
}

fn platform_error(error: &Value) -> PluginError {
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("(no message)");
    let code = error
        .get("code")
        .map(|c| c.to_string())
        .unwrap_or_else(|| "?".into());
    let kind = error.get("type").and_then(Value::as_str).unwrap_or("error");
    PluginError::new(
        ErrorKind::PlatformError,
        "/error",
        format!("Meta API error {code} ({kind}): {message}"),
    )
}

/// Locate why a body did not deserialize, with a JSON path where possible.
fn explain(body: &[u8], error: serde_json::Error) -> PluginError {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return PluginError::malformed(format!("not valid JSON: {error}")),
    };
    let Some(root) = value.as_object() else {
        return PluginError::shape(
            "",
            "expected a JSON object with a `data` array (an insights response)",
        );
    };
    if let Some(error) = root.get("error") {
        return platform_error(error);
    }
    match root.get("data") {
        Some(Value::Array(rows)) => {
            for (i, row) in rows.iter().enumerate() {
                let Some(fields) = row.as_object() else {
                    return PluginError::shape(format!("/data/{i}"), "expected an object");
                };
                for (name, v) in fields {
                    let ok = match name.as_str() {
                        "account_id" | "campaign_id" | "adset_id" | "ad_id" | "impressions"
                        | "clicks" | "spend" => v.is_string() || v.is_number() || v.is_null(),
                        "account_currency" | "campaign_name" | "date_start" | "date_stop" => {
                            v.is_string() || v.is_null()
                        }
                        "actions" | "action_values" => match v {
                            Value::Array(list) => {
                                if let Some((j, _)) = list.iter().enumerate().find(|(_, a)| {
                                    !(a.get("action_type").is_some_and(Value::is_string)
                                        && a.get("value")
                                            .is_some_and(|x| x.is_string() || x.is_number()))
                                }) {
                                    return PluginError::shape(
                                        format!("/data/{i}/{name}/{j}"),
                                        "expected {\"action_type\": string, \"value\": number or string}",
                                    );
                                }
                                true
                            }
                            Value::Null => true,
                            _ => false,
                        },
                        _ => true,
                    };
                    if !ok {
                        return PluginError::shape(
                            format!("/data/{i}/{name}"),
                            format!("unexpected {}", type_name(v)),
                        );
                    }
                }
            }
            PluginError::shape("", error.to_string())
        }
        Some(Value::Null) | None => PluginError::shape(
            "/data",
            "missing: expected the `data` array of an insights response",
        ),
        Some(other) => PluginError::shape(
            "/data",
            format!("expected an array, got {}", type_name(other)),
        ),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ParseContext {
        ParseContext::default()
    }

    fn one(body: &str) -> RowBatch {
        parse(body.as_bytes(), &ctx()).expect("parses")
    }

    #[test]
    fn purchases_are_not_double_counted() {
        let b = one(
            r#"{"data":[{"account_id":"1","campaign_id":"c","date_start":"2026-11-01","date_stop":"2026-11-01",
            "spend":"12.34","impressions":"100","clicks":"7",
            "actions":[{"action_type":"offsite_conversion.fb_pixel_purchase","value":"3"},{"action_type":"purchase","value":"4"},{"action_type":"link_click","value":"6"}],
            "action_values":[{"action_type":"offsite_conversion.fb_pixel_purchase","value":"30.5"},{"action_type":"purchase","value":"41.25"}]}]}"#,
        );
        let r = &b.rows[0];
        assert_eq!(r.spend_micros, 12_340_000);
        assert_eq!(r.conversions_micros, 4_000_000);
        assert_eq!(r.conversion_value_micros, 41_250_000);
        assert_eq!((r.impressions, r.clicks), (100, 7));
        assert_eq!(
            b.extras_of(0).collect::<Vec<_>>(),
            vec![("actions_link_click", 6_000_000)]
        );
    }

    #[test]
    fn pixel_purchases_count_when_purchase_is_absent() {
        let b = one(
            r#"{"data":[{"account_id":"1","campaign_id":"c","date_start":"2026-11-01","date_stop":"2026-11-01",
            "actions":[{"action_type":"offsite_conversion.fb_pixel_purchase","value":"3"}]}]}"#,
        );
        assert_eq!(b.rows[0].conversions_micros, 3_000_000);
        assert_eq!(
            (b.rows[0].impressions, b.rows[0].spend_micros),
            (0, 0),
            "missing metrics are zero"
        );
    }

    #[test]
    fn each_row_reads_only_its_own_actions() {
        // Row 0's actions must not leak into row 1 (their lists are reused),
        // `null` lists are empty, keys come in any order, unknown keys are
        // skipped whatever their value.
        let b = one(r#"{"data":[
            {"actions":[{"value":"2","action_type":"purchase"},{"action_type":"link_click","value":"5"}],
             "action_values":[{"action_type":"purchase","value":"20"}],
             "campaign_id":"c","account_id":"1","date_start":"2026-11-01","date_stop":"2026-11-01",
             "cost_per_action_type":[{"action_type":"purchase","value":"1.5"}],"video_p25_watched_actions":null},
            {"account_id":"1","campaign_id":"c","date_start":"2026-11-02","date_stop":"2026-11-02",
             "actions":null,"action_values":[],"spend":"1"},
            {"account_id":"1","campaign_id":"c","date_start":"2026-11-03","date_stop":"2026-11-03",
             "actions":[{"action_type":"purchase","value":"1"}]}]}"#);
        let sums: Vec<(i64, i64, i64)> = b
            .rows
            .iter()
            .map(|r| {
                (
                    r.conversions_micros,
                    r.conversion_value_micros,
                    r.spend_micros,
                )
            })
            .collect();
        assert_eq!(
            sums,
            vec![
                (2_000_000, 20_000_000, 0),
                (0, 0, 1_000_000),
                (1_000_000, 0, 0)
            ]
        );
        assert_eq!(
            b.extras_of(0).collect::<Vec<_>>(),
            vec![("actions_link_click", 5_000_000)]
        );
        assert_eq!(b.extras_of(1).count() + b.extras_of(2).count(), 0);
    }

    #[test]
    fn a_key_given_twice_is_refused() {
        for twice in [
            r#""spend":"1","spend":"2""#,
            r#""spend":null,"spend":"2""#,
            r#""actions":[],"actions":[{"action_type":"purchase","value":"1"}]"#,
        ] {
            let body = format!(
                r#"{{"data":[{{"account_id":"1","campaign_id":"c","date_start":"2026-11-01",{twice}}}]}}"#
            );
            let error = parse(body.as_bytes(), &ctx()).expect_err(&body);
            assert!(
                error.message.contains("duplicate field"),
                "{body}: {error:?}"
            );
        }
    }

    #[test]
    fn options_choose_what_counts() {
        let mut c = ctx();
        c.options = vec![
            (
                "conversion_action_types".into(),
                "lead, complete_registration".into(),
            ),
            ("extra_action_types".into(), "video_view".into()),
        ];
        let body = r#"{"data":[{"account_id":"1","campaign_id":"c","date_start":"2026-11-01","date_stop":"2026-11-01",
            "actions":[{"action_type":"purchase","value":"9"},{"action_type":"lead","value":"2"},{"action_type":"complete_registration","value":1},{"action_type":"video_view","value":"50"}]}]}"#;
        let b = parse(body.as_bytes(), &c).expect("parses");
        assert_eq!(b.rows[0].conversions_micros, 3_000_000);
        assert_eq!(
            b.extras_of(0).collect::<Vec<_>>(),
            vec![("actions_video_view", 50_000_000)]
        );
    }

    #[test]
    fn errors_name_their_path() {
        let bad = |body: &str| parse(body.as_bytes(), &ctx()).expect_err("rejected");
        let e = bad(
            r#"{"data":[{"account_id":"1","campaign_id":"c","date_start":"2026-11-01","date_stop":"2026-11-01","spend":"12,5"}]}"#,
        );
        assert_eq!(
            (e.kind, e.path.as_str()),
            (ErrorKind::InvalidValue, "/data/0/spend")
        );
        assert!(e.message.contains("12,5"), "{e}");
        // A count with a fraction and a day the month lacks: the reason, not a shape.
        let e = bad(
            r#"{"data":[{"account_id":"1","campaign_id":"c","date_start":"2026-11-01","date_stop":"2026-11-01","clicks":"1.5"}]}"#,
        );
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            (
                "/data/0/clicks",
                "`1.5` is not a whole number: a count has no fraction"
            )
        );
        let e = bad(
            r#"{"data":[{"account_id":"1","campaign_id":"c","date_start":"2026-11-31","date_stop":"2026-11-31"}]}"#,
        );
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            (
                "/data/0/date_start",
                "`2026-11-31` is not a date: November 2026 has 30 days"
            )
        );
        let e = bad(r#"{"data":[{"account_id":"1","date_start":"2026-11-01"}]}"#);
        assert_eq!(
            (e.kind, e.path.as_str()),
            (ErrorKind::InvalidShape, "/data/0/campaign_id")
        );
        let e = bad(
            r#"{"data":[{"account_id":"1","campaign_id":"c","date_start":"2026-11-01","date_stop":"2026-11-07"}]}"#,
        );
        assert_eq!(e.path, "/data/0/date_stop");
        assert!(e.message.contains("time_increment=1"));
        let e = bad(r#"{"data":[{"campaign_id":"c","date_start":"2026-11-01"}]}"#);
        assert_eq!(
            (e.kind, e.path.as_str()),
            (ErrorKind::MissingContext, "/data/0/account_id")
        );
        let e = bad(r#"{"data":[{"campaign_id":{"id":1}}]}"#);
        assert_eq!(
            (e.kind, e.path.as_str()),
            (ErrorKind::InvalidShape, "/data/0/campaign_id")
        );
        let e = bad(r#"{"data":[{"actions":[{"value":"1"}]}]}"#);
        assert_eq!(e.path, "/data/0/actions/0");
        let e = bad(r#"{"data":"nope"}"#);
        assert_eq!(e.path, "/data");
        let e = bad(r#"{"rows":[]}"#);
        assert_eq!(
            (e.kind, e.path.as_str()),
            (ErrorKind::InvalidShape, "/data")
        );
        let e = bad(r#"{"data":["#);
        assert_eq!(e.kind, ErrorKind::Malformed);
        assert!(e.message.contains("line 1"), "{e}");
        let e = bad(r#"[1,2]"#);
        assert_eq!(e.kind, ErrorKind::InvalidShape);
        let e = bad(
            r#"{"data":[{"account_id":"1","campaign_id":"c","date_start":"2026-11-01","impressions":"-3"}]}"#,
        );
        assert_eq!(e.path, "/data/0/impressions");
        // Streamed rows: a bad second insight stops the page with its own path,
        // and a second `data` array is refused rather than appended.
        let e = bad(
            r#"{"data":[{"account_id":"1","campaign_id":"c","date_start":"2026-11-01"},
                        {"account_id":"1","campaign_id":"c","date_start":"2026-11-31"}]}"#,
        );
        assert_eq!(
            (e.kind, e.path.as_str()),
            (ErrorKind::InvalidValue, "/data/1/date_start")
        );
        let e = bad(
            r#"{"data":[{"account_id":"1","campaign_id":"c","date_start":"2026-11-01"}],
                "data":[{"account_id":"1","campaign_id":"d","date_start":"2026-11-01"}]}"#,
        );
        assert!(e.message.contains("duplicate field `data`"), "{e}");
    }

    #[test]
    fn context_account_and_numeric_ids() {
        let mut c = ctx();
        c.account_id = Some("act_555".into());
        let b = parse(br#"{"data":[{"campaign_id":120210,"ad_id":99,"date_start":"2026-11-01","date_stop":"2026-11-01"}]}"#, &c).expect("parses");
        let r = &b.rows[0];
        assert_eq!(b.str(r.account_id.expect("account")), "555");
        assert_eq!(b.str(r.campaign_id.expect("campaign")), "120210");
        assert_eq!(b.str(r.ad_id.expect("ad")), "99");
        assert_eq!(r.ad_group_id, None);
    }

    #[test]
    fn next_page_drops_the_access_token() {
        assert_eq!(
            strip_access_token("https://graph.facebook.com/v21.0/act_1/insights?access_token=EAAB&limit=25&after=MjQZD"),
            "https://graph.facebook.com/v21.0/act_1/insights?limit=25&after=MjQZD"
        );
        assert_eq!(
            strip_access_token("https://x/y?access_token=1"),
            "https://x/y"
        );
    }
}
