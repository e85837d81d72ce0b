//! Serving routes: `GET /v1/insights`, `GET /v1/campaigns` and
//! `GET /v1/metrics`, always scoped to the caller's tenant.
//!
//! Read-your-writes: an insights request first waits (briefly) until every
//! row durable on the bus when it arrived has been applied, so a dashboard
//! that just got `202` sees its data.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::NaiveDate;
use serde_json::{json, Map, Value};

use super::openapi::{
    CampaignList, CurrencyCode, DimensionName, EntityId, ErrorBody, GranularityName,
    InsightsAnswer, MetricList, MetricName, PlatformName, SortField,
};
use super::paging::{self, Order, SortKey};
use super::{ApiError, Caller, Params};
use crate::app::App;
use crate::config::is_currency;
use crate::insights::cache::{AnswerCache, CachedAnswer};
use crate::insights::catalog::{self, Metric, MetricKind};
use crate::insights::{self, Dimension, Granularity, Rollup, BASE_METRICS, RATIO_METRICS};
use crate::store::{Aggregate, FactFilter};

/// How long an insights request waits for acknowledged rows to be applied.
const CONSISTENCY_WAIT: Duration = Duration::from_secs(5);

/// A list parameter's values (`a,b`, or repeated; see [`super::params`]),
/// `None` when it is absent. Values are taken as written: an empty one
/// (`order_by=`, `group_by=platform,`) is `400`, as the schema's item
/// patterns and enums say, never silently dropped.
fn list_param(
    query: &HashMap<String, String>,
    name: &str,
) -> Result<Option<Vec<String>>, ApiError> {
    let Some(value) = query.get(name) else {
        return Ok(None);
    };
    let list: Vec<String> = value.split(',').map(String::from).collect();
    if list.iter().any(String::is_empty) {
        return Err(ApiError::invalid_parameter(
            name,
            "has an empty value (write values comma-separated, with no empty or trailing commas)",
        ));
    }
    Ok(Some(list))
}

/// [`list_param`], sorted and without repeats (filters).
fn sorted_list(
    query: &HashMap<String, String>,
    name: &str,
) -> Result<Option<Vec<String>>, ApiError> {
    Ok(list_param(query, name)?.map(|mut list| {
        list.sort();
        list.dedup();
        list
    }))
}

fn date_param(query: &HashMap<String, String>, name: &str) -> Result<NaiveDate, ApiError> {
    let value = query
        .get(name)
        .ok_or_else(|| ApiError::invalid_parameter(name, "is required (YYYY-MM-DD)"))?;
    NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| {
        ApiError::invalid_parameter(
            name,
            format!("`{value}` is not a date of the form YYYY-MM-DD"),
        )
    })
}

/// The row filters shared by `/v1/insights` and `/v1/campaigns`: platforms
/// the loaded adapters speak (another is `400`, never a silent empty
/// answer), ids as given, currency codes in any case (kept upper case).
fn filter_param(app: &App, query: &HashMap<String, String>) -> Result<FactFilter, ApiError> {
    let platforms = sorted_list(query, "platform")?;
    if let Some(list) = &platforms {
        let known = app.platforms();
        if let Some(unknown) = list.iter().find(|p| !known.contains(p)) {
            return Err(ApiError::invalid_parameter(
                "platform",
                format!(
                    "`{unknown}` is not a platform of this deployment (known: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    let currencies = match list_param(query, "currency")? {
        None => None,
        Some(codes) => {
            let mut list = Vec::new();
            for code in codes {
                let upper = code.to_ascii_uppercase();
                if !is_currency(&upper) {
                    return Err(ApiError::invalid_parameter(
                        "currency",
                        format!("`{code}` is not an ISO 4217 code (three letters, e.g. USD)"),
                    ));
                }
                list.push(upper);
            }
            list.sort();
            list.dedup();
            Some(list)
        }
    };
    Ok(FactFilter {
        platforms,
        account_ids: sorted_list(query, "account_id")?,
        campaign_ids: sorted_list(query, "campaign_id")?,
        currencies,
    })
}

/// `limit`: 1 to `api.max_page_rows` (its default).
fn limit_param(app: &App, query: &HashMap<String, String>) -> Result<usize, ApiError> {
    let max_page = app.config.api.max_page_rows;
    Ok(match query.get("limit") {
        None => max_page,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=max_page).contains(l))
            .ok_or_else(|| {
                ApiError::invalid_parameter(
                    "limit",
                    format!("must be a number from 1 to {max_page}"),
                )
            })?,
    } as usize)
}

/// Which extra metrics a catalog lists.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Extras {
    /// Every name the store has seen for the tenant, and the ones its pipelines declare.
    All,
    /// None: the caller named only built-in and plugin metrics, so the
    /// store is not asked (a round trip to ClickHouse saved per query).
    Skipped,
}

/// The metrics the caller's tenant may ask for (`GET /v1/metrics`); the
/// insights route accepts exactly these names.
async fn tenant_catalog(
    app: &App,
    tenant: &str,
    plugin_metrics: &std::collections::BTreeMap<String, crate::plugin::metric::MetricPlugin>,
    wanted: Extras,
) -> Result<Vec<Metric>, ApiError> {
    let mut extras = Vec::new();
    if wanted == Extras::All {
        extras = app
            .store
            .extra_metric_names(tenant)
            .await
            .map_err(|e| ApiError::internal("reading metric names", e))?;
        // Metrics the tenant's pipelines declare are known before any non-zero value.
        extras.extend(app.declared_extra_metrics(tenant));
    }
    extras.sort();
    extras.dedup();
    let mut metrics = catalog::builtins();
    let taken = |metrics: &[Metric], name: &str| metrics.iter().any(|m| m.name == name);
    for (name, plugin) in plugin_metrics {
        if let Some(info) = plugin.metric(name) {
            if !taken(&metrics, name) {
                metrics.push(catalog::plugin_metric(plugin.name(), info));
            }
        }
    }
    for name in extras {
        if !taken(&metrics, &name) {
            metrics.push(catalog::extra(&name));
        }
    }
    Ok(metrics)
}

/// `GET /v1/insights`.
#[utoipa::path(get, path = "/v1/insights", tag = "serving",
    description = "Metrics of the caller's tenant, bucketed and grouped. Rows of different currencies are never summed. \
        Money is in major units of the row's `currency` (12.5 = USD 12.50); ratios are fractions (0.025 = 2.5 %) and `null` when their denominator is 0. \
        Answers carry an `ETag`; send it back in `If-None-Match` for `304`. \
        Pages are keyset cursors (`next_cursor`, `total`): a row ingested between two pages never makes a page repeat a row; \
        when the data changed and `order_by` names a metric, a cursor is refused with `409 cursor_stale` and the client starts again. \
        Cross-parameter rules the schema cannot state: `to` not before `from`, at most `api.max_range_days` days, \
        `order_by` fields must be in the answer, `metrics` names come from `GET /v1/metrics`, `platform` values from the deployment's adapters.",
    params(
        ("from" = String, Query, format = Date, description = "First day, inclusive (YYYY-MM-DD)"),
        ("to" = String, Query, format = Date, description = "Last day, inclusive (YYYY-MM-DD); not before `from`"),
        ("granularity" = Option<GranularityName>, Query, description = "Bucket: `day` (default), `week` (ISO, from Monday), `month` or `total`. Week and month buckets that reach outside `from`..`to` hold only the days inside and are marked `partial`"),
        ("group_by" = Option<Vec<DimensionName>>, Query, style = Form, explode = false, description = "Dimensions to group by, comma-separated or repeated. `platform` joins any id dimension (ids are platform-scoped)"),
        ("platform" = Option<Vec<PlatformName>>, Query, style = Form, explode = false, description = "Keep these platforms (comma-separated or repeated); a platform no adapter of the deployment speaks is `400`"),
        ("account_id" = Option<Vec<EntityId>>, Query, style = Form, explode = false, description = "Keep these accounts"),
        ("campaign_id" = Option<Vec<EntityId>>, Query, style = Form, explode = false, description = "Keep these campaigns"),
        ("currency" = Option<Vec<CurrencyCode>>, Query, style = Form, explode = false, description = "Keep these ISO 4217 currencies (any case)"),
        ("metrics" = Option<Vec<MetricName>>, Query, style = Form, explode = false, description = "Metrics to show (default: every base and ratio metric); `GET /v1/metrics` lists the names the tenant may use"),
        ("order_by" = Option<Vec<SortField>>, Query, style = Form, explode = false, description = "Fields to sort by (date, a group_by dimension, currency or a requested metric); `-field` sorts descending; nulls last; ties keep the default (date, dimensions, currency) order"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "Rows per page (default and maximum: `api.max_page_rows`, 10000 unless configured)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page (with every other parameter unchanged)"),
        ("If-None-Match" = Option<String>, Header, description = "ETag of an answer the client holds")),
    responses((status = 200, description = "One page of rows", body = InsightsAnswer),
        (status = 304, description = "The answer has not changed (`If-None-Match` matched its ETag)"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "`cursor_stale`: the data changed since the first page of an order by metric values; start again", body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 500, description = "A metric plugin failed", body = ErrorBody),
        (status = 503, description = "A metric plugin is busy; see Retry-After", body = ErrorBody)))]
pub async fn insights(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    Params(query): Params,
) -> Result<Response, ApiError> {
    let tenant = &caller.0.tenant;
    let from = date_param(&query, "from")?;
    let to = date_param(&query, "to")?;
    if to < from {
        return Err(ApiError::invalid_parameter(
            "to",
            "must not be before `from`",
        ));
    }
    let max_days = app.config.api.max_range_days;
    if (to - from).num_days() >= i64::from(max_days) {
        return Err(ApiError::invalid_parameter(
            "to",
            format!("the range may span at most {max_days} days"),
        ));
    }
    let granularity = match query.get("granularity") {
        None => Granularity::Day,
        Some(g) => Granularity::parse(g).ok_or_else(|| {
            ApiError::invalid_parameter(
                "granularity",
                format!("`{g}` is not one of day, week, month, total"),
            )
        })?,
    };
    let mut group_by = Vec::new();
    for name in list_param(&query, "group_by")?.unwrap_or_default() {
        let d = Dimension::parse(&name).ok_or_else(|| {
            ApiError::invalid_parameter(
                "group_by",
                format!(
                    "`{name}` is not one of {}",
                    Dimension::ALL.map(|d| d.as_str()).join(", ")
                ),
            )
        })?;
        if !group_by.contains(&d) {
            group_by.push(d);
        }
    }
    let filter = filter_param(&app, &query)?;
    let requested_metrics = list_param(&query, "metrics")?.map(|mut list| {
        // `metrics=spend&metrics=spend,clicks`: once each, in first-named order.
        let mut seen = std::collections::HashSet::new();
        list.retain(|m| seen.insert(m.clone()));
        list
    });
    let order_by: Vec<SortKey> = list_param(&query, "order_by")?
        .unwrap_or_default()
        .iter()
        .map(|f| SortKey::parse(f))
        .collect();
    let limit = limit_param(&app, &query)?;
    let normalized = format!(
        "{from}|{to}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{requested_metrics:?}|{order_by:?}",
        granularity.as_str(),
        group_by,
        filter.platforms,
        filter.account_ids,
        filter.campaign_ids,
        filter.currencies,
    );
    let query_digest = paging::digest(&normalized);
    let cursor = query.get("cursor").map(String::as_str);

    // Consistency: everything acknowledged before this request is applied,
    // and the store holds the tenant's data through the version we key on.
    let (caught_up, version) = app
        .bus
        .catch_up(&app.store, &app.data_versions, tenant, CONSISTENCY_WAIT)
        .await;
    let plugin_metrics = app.tenant_metrics(tenant);
    let plugins: Vec<&str> = plugin_metrics.values().map(|p| p.content_hash()).collect();
    let key = AnswerCache::key(
        tenant,
        &version,
        &format!("{normalized}|{plugins:?}|{cursor:?}|{limit}"),
    );
    if caught_up && app.answers.enabled() {
        let (found, hits, lookups) = app.answers.get(&key).await;
        app.telemetry.cache_lookup(found.is_some(), hits, lookups);
        if let Some(answer) = found {
            return Ok(respond(&answer, &headers));
        }
    }

    // The store's extra metric names matter only when a requested metric (or
    // a requested plugin metric's input) is neither built in nor a plugin's.
    let named = requested_metrics.iter().flatten();
    let inputs = named
        .clone()
        .filter_map(|m| plugin_metrics.get(m).and_then(|p| p.metric(m)))
        .flat_map(|m| m.inputs.iter());
    let builtin = |m: &str| BASE_METRICS.contains(&m) || RATIO_METRICS.contains(&m);
    let wanted = if named
        .chain(inputs)
        .any(|m| !builtin(m) && !plugin_metrics.contains_key(m))
    {
        Extras::All
    } else {
        Extras::Skipped
    };
    let catalog = tenant_catalog(&app, tenant, &plugin_metrics, wanted).await?;
    let metrics = match requested_metrics {
        None => BASE_METRICS
            .iter()
            .chain(RATIO_METRICS.iter())
            .map(|m| m.to_string())
            .collect(),
        Some(list) => {
            if let Some(unknown) = list.iter().find(|m| !catalog.iter().any(|c| &c.name == *m)) {
                let known: Vec<&str> = catalog.iter().map(|m| m.name.as_str()).collect();
                return Err(ApiError::invalid_parameter(
                    "metrics",
                    format!(
                        "unknown metric `{unknown}` (this tenant's metrics, also at GET /v1/metrics: {})",
                        known.join(", ")
                    ),
                ));
            }
            list
        }
    };
    let dimensions = insights::answer_dimensions(&group_by);
    let mut identity: Vec<String> = Vec::new();
    if granularity != Granularity::Total {
        identity.push("date".into());
    }
    identity.extend(dimensions.iter().map(|d| d.as_str().to_owned()));
    identity.push("currency".into());
    for key in &order_by {
        let field = key.field.as_str();
        let sortable = identity.iter().any(|f| f == field) || metrics.iter().any(|m| m == field);
        if !sortable {
            return Err(ApiError::invalid_parameter(
                "order_by",
                format!("`{field}` is not in the answer (date, currency, a group_by dimension or a requested metric)"),
            ));
        }
    }

    let days = crate::store::Days {
        from: insights::days_of(from),
        to: insights::days_of(to),
    };
    // The extra metrics the answer shows or a metric plugin reads.
    let extras: Vec<&str> = catalog
        .iter()
        .filter(|m| m.kind == MetricKind::Extra)
        .map(|m| m.name.as_str())
        .collect();
    let mut wanted_extras: Vec<String> = metrics
        .iter()
        .filter(|m| !plugin_metrics.contains_key(*m))
        .cloned()
        .chain(
            metrics
                .iter()
                .filter_map(|m| plugin_metrics.get(m).and_then(|p| p.metric(m)))
                .flat_map(|m| m.inputs.iter().cloned()),
        )
        .filter(|m| extras.contains(&m.as_str()))
        .collect();
    wanted_extras.sort();
    wanted_extras.dedup();
    // Snapshot sums and deltas at once (two round trips to a remote store).
    let aggregate = Aggregate {
        days,
        filter: &filter,
        granularity,
        group_by: &group_by,
        extras: &wanted_extras,
    };
    let (summed, deltas) = tokio::join!(
        app.store.aggregate(tenant, &aggregate),
        app.store.deltas(tenant, days, &filter)
    );
    let summed = summed.map_err(|e| ApiError::internal("summing facts", e))?;
    let deltas = deltas.map_err(|e| ApiError::internal("reading deltas", e))?;
    let spec = Rollup {
        granularity,
        group_by,
        metrics,
    };
    let groups = insights::groups(summed, &deltas, &spec);
    let derived = derive(&app, &plugin_metrics, &spec.metrics, &groups).await?;
    let mut rows = insights::render(groups, &spec.metrics, &derived);
    mark_partial(&mut rows, granularity, days);
    let order = Order {
        keys: order_by,
        identity,
    };
    let page = order.page(rows, cursor, &query_digest, &version, limit)?;
    let mut rows = page.rows;
    name_entities(&app, tenant, &dimensions, &mut rows).await?;
    let body = serde_json::to_vec(&json!({
        "from": from.to_string(),
        "to": to.to_string(),
        "granularity": granularity.as_str(),
        "rows": rows,
        "next_cursor": page.next_cursor,
        "total": page.total,
    }))
    .map_err(|e| ApiError::internal("rendering the answer", e))?;
    let answer = Arc::new(CachedAnswer::new(body));
    if caught_up {
        app.answers.insert(key, answer.clone()).await;
    }
    Ok(respond(&answer, &headers))
}

/// Week and month rows get `partial`: whether their bucket reaches outside
/// the asked days (the row sums only the days inside).
fn mark_partial(
    rows: &mut [Map<String, Value>],
    granularity: Granularity,
    days: crate::store::Days,
) {
    if !matches!(granularity, Granularity::Week | Granularity::Month) {
        return;
    }
    for row in rows {
        let start = row
            .get("date")
            .and_then(Value::as_str)
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .map(insights::days_of);
        if let Some(start) = start {
            let end = insights::bucket_end(start, granularity).unwrap_or(start);
            row.insert(
                "partial".into(),
                Value::Bool(start < days.from || end > days.to),
            );
        }
    }
}

/// Add `campaign_name`, `ad_group_name`, `ad_name` to rows grouped by those
/// ids (`null` where no row named the entity).
async fn name_entities(
    app: &App,
    tenant: &str,
    dimensions: &[Dimension],
    rows: &mut [Map<String, Value>],
) -> Result<(), ApiError> {
    for (dimension, level, field) in [
        (Dimension::CampaignId, "campaign", "campaign_name"),
        (Dimension::AdGroupId, "ad_group", "ad_group_name"),
        (Dimension::AdId, "ad", "ad_name"),
    ] {
        if !dimensions.contains(&dimension) {
            continue;
        }
        let id_of = |row: &Map<String, Value>| {
            row.get(dimension.as_str())
                .and_then(Value::as_str)
                .map(String::from)
        };
        let mut ids: Vec<String> = rows.iter().filter_map(id_of).collect();
        ids.sort();
        ids.dedup();
        let names = app
            .store
            .names(tenant, level, &ids)
            .await
            .map_err(|e| ApiError::internal("reading names", e))?;
        for row in rows.iter_mut() {
            let platform = row.get("platform").and_then(Value::as_str).unwrap_or("");
            let name = id_of(row)
                .and_then(|id| names.get(&(platform.to_owned(), id)))
                .map_or(Value::Null, |n| Value::String(n.clone()));
            row.insert(field.into(), name);
        }
    }
    Ok(())
}

/// `200` with the answer and its ETag, or `304` when the client holds it.
fn respond(answer: &CachedAnswer, headers: &HeaderMap) -> Response {
    let etag = HeaderValue::from_str(&answer.etag).unwrap_or(HeaderValue::from_static("\"\""));
    let holds = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == answer.etag);
    let cache_control = HeaderValue::from_static("private, no-cache");
    if holds {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache_control)],
        )
            .into_response();
    }
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache_control),
        ],
        answer.body.clone(),
    )
        .into_response()
}

/// `503 plugin_busy` with `Retry-After`: every call slot of the plugin stayed taken.
pub fn plugin_busy(busy: crate::plugin::registry::Busy) -> ApiError {
    ApiError {
        retry_after: Some(busy.retry_after),
        ..ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "plugin_busy",
            busy.to_string(),
        )
    }
}

/// Metric plugins' values for the requested plugin metrics: one batch call
/// per plugin for the whole answer, off the async runtime.
async fn derive(
    app: &App,
    plugins: &std::collections::BTreeMap<String, crate::plugin::metric::MetricPlugin>,
    metrics: &[String],
    groups: &[insights::Group],
) -> Result<HashMap<String, Vec<Option<f64>>>, ApiError> {
    use crate::plugin::metric::ComputeRequest;
    let mut by_plugin: std::collections::BTreeMap<
        &str,
        (crate::plugin::metric::MetricPlugin, Vec<String>),
    > = Default::default();
    for metric in metrics {
        if let Some(plugin) = plugins.get(metric) {
            by_plugin
                .entry(plugin.name())
                .or_insert_with(|| (plugin.clone(), vec![]))
                .1
                .push(metric.clone());
        }
    }
    let mut derived = HashMap::new();
    for (_, (plugin, wanted)) in by_plugin {
        let mut columns: Vec<String> = wanted
            .iter()
            .filter_map(|m| plugin.metric(m))
            .flat_map(|m| m.inputs.iter().cloned())
            .collect();
        columns.sort();
        columns.dedup();
        let values: Vec<i64> = groups
            .iter()
            .flat_map(|g| columns.iter().map(|c| g.sums.component(c)))
            .collect();
        let request = ComputeRequest {
            metrics: wanted.clone(),
            columns,
            values,
            row_count: groups.len() as u32,
        };
        let worker = plugin.clone();
        // Like every plugin call, a compute holds one of its plugin's call slots.
        let _slot = match app.metric_plugins.get(plugin.name()) {
            Some(slot) => Some(slot.call_slot().await.map_err(plugin_busy)?),
            None => None,
        };
        let values = tokio::task::spawn_blocking(move || worker.compute(&request))
            .await
            .map_err(|e| ApiError::internal("metric plugin task failed", e))?
            .map_err(|e| match e {
                crate::plugin::CallError::Busy { .. } => ApiError {
                    retry_after: Some(1),
                    ..ApiError::new(
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        "plugin_busy",
                        e.to_string(),
                    )
                },
                e => ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "metric_plugin_failed",
                    format!("metric plugin `{}`: {e}", plugin.name()),
                ),
            })?;
        // Row-major: row i holds wanted.len() values.
        for (j, metric) in wanted.iter().enumerate() {
            let column = values
                .chunks(wanted.len())
                .map(|row| row.get(j).copied().flatten())
                .collect();
            derived.insert(metric.clone(), column);
        }
    }
    Ok(derived)
}

/// `GET /v1/campaigns`.
#[utoipa::path(get, path = "/v1/campaigns", tag = "serving",
    description = "The tenant's known campaigns, filtered and paged like `/v1/insights` (keyset cursors in platform, account, campaign order).",
    params(
        ("platform" = Option<Vec<PlatformName>>, Query, style = Form, explode = false, description = "Keep these platforms; a platform no adapter of the deployment speaks is `400`"),
        ("account_id" = Option<Vec<EntityId>>, Query, style = Form, explode = false, description = "Keep these accounts"),
        ("campaign_id" = Option<Vec<EntityId>>, Query, style = Form, explode = false, description = "Keep these campaigns"),
        ("currency" = Option<Vec<CurrencyCode>>, Query, style = Form, explode = false, description = "Keep these ISO 4217 currencies (any case)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "Campaigns per page (default and maximum: `api.max_page_rows`)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page (with every other parameter unchanged)")),
    responses((status = 200, description = "One page of campaigns", body = CampaignList),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
pub async fn campaigns(
    State(app): State<App>,
    caller: Caller,
    Params(query): Params,
) -> Result<Response, ApiError> {
    let filter = filter_param(&app, &query)?;
    let limit = limit_param(&app, &query)?;
    let query_digest = paging::digest(&format!(
        "campaigns|{:?}|{:?}|{:?}|{:?}",
        filter.platforms, filter.account_ids, filter.campaign_ids, filter.currencies
    ));
    let keep = |list: &Option<Vec<String>>, value: &str| {
        list.as_ref().is_none_or(|l| l.iter().any(|v| v == value))
    };
    let campaigns = app
        .store
        .campaigns(&caller.0.tenant)
        .await
        .map_err(|e| ApiError::internal("reading campaigns", e))?;
    let rows: Vec<Map<String, Value>> = campaigns
        .into_iter()
        .filter(|c| {
            keep(&filter.platforms, &c.platform)
                && keep(&filter.account_ids, &c.account_id)
                && keep(&filter.campaign_ids, &c.campaign_id)
                && keep(&filter.currencies, &c.currency)
        })
        .filter_map(|c| serde_json::to_value(c).ok()?.as_object().cloned())
        .collect();
    let order = Order {
        keys: vec![],
        identity: vec!["platform".into(), "account_id".into(), "campaign_id".into()],
    };
    // The identity order needs no data version: pages never repeat a campaign.
    let page = order.page(
        rows,
        query.get("cursor").map(String::as_str),
        &query_digest,
        "",
        limit,
    )?;
    Ok(Json(json!({
        "campaigns": page.rows,
        "next_cursor": page.next_cursor,
        "total": page.total,
    }))
    .into_response())
}

/// `GET /v1/metrics`.
#[utoipa::path(get, path = "/v1/metrics", tag = "serving",
    description = "Every metric the caller's tenant may name in `/v1/insights?metrics=`: base sums, ratios, extra metrics its pipelines declare or its data holds, and metric-plugin metrics, each with its unit (`count`; `currency`: major units of the row's currency; `fraction`: 0.025 = 2.5 %). Every name listed is accepted, with or without data.",
    responses((status = 200, description = "The tenant's metrics", body = MetricList),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn metrics(State(app): State<App>, caller: Caller) -> Result<Response, ApiError> {
    let tenant = &caller.0.tenant;
    let plugin_metrics = app.tenant_metrics(tenant);
    let metrics = tenant_catalog(&app, tenant, &plugin_metrics, Extras::All).await?;
    Ok(Json(json!({ "metrics": metrics })).into_response())
}
