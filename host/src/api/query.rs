//! Serving routes: `GET /v1/insights` and `GET /v1/campaigns`, always scoped
//! to the caller's tenant.
//!
//! Read-your-writes: an insights request first waits (briefly) until every
//! row durable on the bus when it arrived has been applied, so a dashboard
//! that just got `202` sees its data.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::NaiveDate;
use serde_json::{json, Value};

use super::openapi::{CampaignList, ErrorBody, InsightsAnswer};
use super::{ApiError, Caller, Params};
use crate::app::App;
use crate::insights::cache::{AnswerCache, CachedAnswer};
use crate::insights::{self, Dimension, Granularity, Rollup, BASE_METRICS, RATIO_METRICS};
use crate::store::{Aggregate, FactFilter};

const INSIGHTS_PARAMS: [&str; 12] = [
    "from",
    "to",
    "granularity",
    "group_by",
    "platform",
    "account_id",
    "campaign_id",
    "metrics",
    "currency",
    "order_by",
    "limit",
    "cursor",
];

/// How long an insights request waits for acknowledged rows to be applied.
const CONSISTENCY_WAIT: Duration = Duration::from_secs(5);

fn comma_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn sorted_list(value: Option<&String>) -> Option<Vec<String>> {
    value.map(|v| {
        let mut list = comma_list(v);
        list.sort();
        list.dedup();
        list
    })
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

/// One `order_by` key: a field, descending when written `-field`.
#[derive(Clone, Debug, PartialEq)]
struct SortKey {
    field: String,
    descending: bool,
}

/// Where a page starts, bound to the query it belongs to.
#[derive(serde::Serialize, serde::Deserialize)]
struct Cursor {
    /// Rows already returned.
    o: usize,
    /// Digest of the query (without paging).
    q: String,
}

fn digest(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

fn encode_cursor(cursor: &Cursor) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(cursor).unwrap_or_default())
}

fn decode_cursor(text: &str, query_digest: &str) -> Result<usize, ApiError> {
    use base64::Engine as _;
    let cursor: Cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| {
            ApiError::invalid_parameter("cursor", "is not a cursor this API returned")
        })?;
    if cursor.q != query_digest {
        return Err(ApiError::invalid_parameter(
            "cursor",
            "belongs to a different query (keep every other parameter as it was)",
        ));
    }
    Ok(cursor.o)
}

/// Order two cell values: numbers numerically, text lexically; missing or
/// `null` values go last whatever the direction.
fn compare_cells(a: Option<&Value>, b: Option<&Value>, descending: bool) -> Ordering {
    fn present(v: Option<&Value>) -> Option<&Value> {
        v.filter(|v| !v.is_null())
    }
    match (present(a), present(b)) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) => {
            let ord = match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                _ => x.as_str().unwrap_or("").cmp(y.as_str().unwrap_or("")),
            };
            if descending {
                ord.reverse()
            } else {
                ord
            }
        }
    }
}

/// `GET /v1/insights`.
#[utoipa::path(get, path = "/v1/insights", tag = "serving",
    description = "Metrics of the caller's tenant, bucketed and grouped. Answers carry an `ETag`; send it back in `If-None-Match` for `304`. Rows of different currencies are never summed.",
    params(
        ("from" = String, Query, description = "First day, inclusive (YYYY-MM-DD)"),
        ("to" = String, Query, description = "Last day, inclusive (YYYY-MM-DD)"),
        ("granularity" = Option<String>, Query, description = "day (default), week (ISO, Monday), month or total"),
        ("group_by" = Option<String>, Query, description = "Comma list of platform, account_id, campaign_id, ad_group_id, ad_id"),
        ("platform" = Option<String>, Query, description = "Comma list of platforms to keep"),
        ("account_id" = Option<String>, Query, description = "Comma list of accounts to keep"),
        ("campaign_id" = Option<String>, Query, description = "Comma list of campaigns to keep"),
        ("currency" = Option<String>, Query, description = "Comma list of currencies to keep"),
        ("metrics" = Option<String>, Query, description = "Comma list of metrics (default: every base and ratio metric)"),
        ("order_by" = Option<String>, Query, description = "Comma list of fields (date, dimensions, currency, requested metrics); `-field` sorts descending; nulls last"),
        ("limit" = Option<u32>, Query, description = "Rows per page (default and maximum: api.max_page_rows)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("If-None-Match" = Option<String>, Header, description = "ETag of an answer the client holds")),
    responses((status = 200, body = InsightsAnswer, headers(("ETag" = String))),
        (status = 304, description = "The answer has not changed"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 500, description = "A metric plugin failed", body = ErrorBody),
        (status = 503, description = "A metric plugin is busy; see Retry-After", body = ErrorBody)))]
pub async fn insights(
    State(app): State<App>,
    caller: Caller,
    headers: HeaderMap,
    Params(query): Params,
) -> Result<Response, ApiError> {
    let tenant = &caller.0.tenant;
    if let Some(unknown) = query
        .keys()
        .find(|k| !INSIGHTS_PARAMS.contains(&k.as_str()))
    {
        return Err(ApiError::invalid_parameter(
            unknown,
            format!(
                "unknown parameter (accepted: {})",
                INSIGHTS_PARAMS.join(", ")
            ),
        ));
    }
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
    for name in query
        .get("group_by")
        .map(|v| comma_list(v))
        .unwrap_or_default()
    {
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
    let filter = FactFilter {
        platforms: sorted_list(query.get("platform")),
        account_ids: sorted_list(query.get("account_id")),
        campaign_ids: sorted_list(query.get("campaign_id")),
        currencies: sorted_list(query.get("currency")),
    };
    let requested_metrics = query.get("metrics").map(|v| comma_list(v));
    if requested_metrics.as_ref().is_some_and(|m| m.is_empty()) {
        return Err(ApiError::invalid_parameter(
            "metrics",
            "must name at least one metric",
        ));
    }
    let order_by: Vec<SortKey> = query
        .get("order_by")
        .map(|v| comma_list(v))
        .unwrap_or_default()
        .into_iter()
        .map(|f| match f.strip_prefix('-') {
            Some(field) => SortKey {
                field: field.to_owned(),
                descending: true,
            },
            None => SortKey {
                field: f.strip_prefix('+').unwrap_or(&f).to_owned(),
                descending: false,
            },
        })
        .collect();
    let max_page = app.config.api.max_page_rows;
    let limit = match query.get("limit") {
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
    } as usize;
    let normalized = format!(
        "{from}|{to}|{}|{:?}|{:?}|{:?}|{:?}|{:?}|{requested_metrics:?}|{order_by:?}",
        granularity.as_str(),
        group_by,
        filter.platforms,
        filter.account_ids,
        filter.campaign_ids,
        filter.currencies,
    );
    let query_digest = digest(&normalized);
    let offset = match query.get("cursor") {
        None => 0,
        Some(c) => decode_cursor(c, &query_digest)?,
    };

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
        &format!("{normalized}|{plugins:?}|{offset}|{limit}"),
    );
    if caught_up && app.answers.enabled() {
        let (found, hits, lookups) = app.answers.get(&key).await;
        app.telemetry.cache_lookup(found.is_some(), hits, lookups);
        if let Some(answer) = found {
            return Ok(respond(&answer, &headers));
        }
    }

    let mut extras = app
        .store
        .extra_metric_names(tenant)
        .await
        .map_err(|e| ApiError::internal("reading metric names", e))?;
    // Metrics the tenant's pipelines declare are known before any non-zero value.
    for name in app.declared_extra_metrics(tenant) {
        if !extras.contains(&name) {
            extras.push(name);
        }
    }
    extras.sort();
    let metrics = match requested_metrics {
        None => BASE_METRICS
            .iter()
            .chain(RATIO_METRICS.iter())
            .map(|m| m.to_string())
            .collect(),
        Some(list) => {
            for m in &list {
                if !BASE_METRICS.contains(&m.as_str())
                    && !RATIO_METRICS.contains(&m.as_str())
                    && !extras.contains(m)
                    && !plugin_metrics.contains_key(m)
                {
                    let mut known: Vec<&str> = BASE_METRICS
                        .iter()
                        .chain(RATIO_METRICS.iter())
                        .copied()
                        .collect();
                    known.extend(extras.iter().map(String::as_str));
                    known.extend(plugin_metrics.keys().map(String::as_str));
                    return Err(ApiError::invalid_parameter(
                        "metrics",
                        format!("unknown metric `{m}` (known: {})", known.join(", ")),
                    ));
                }
            }
            list
        }
    };
    for key in &order_by {
        let field = key.field.as_str();
        let sortable = field == "date"
            || field == "currency"
            || group_by.iter().any(|d| d.as_str() == field)
            || metrics.iter().any(|m| m == field);
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
        .filter(|m| extras.contains(m))
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
    if !order_by.is_empty() {
        // Stable: ties keep the default (date, dimensions) order.
        rows.sort_by(|a, b| {
            order_by
                .iter()
                .map(|k| compare_cells(a.get(&k.field), b.get(&k.field), k.descending))
                .find(|o| o.is_ne())
                .unwrap_or(Ordering::Equal)
        });
    }
    let total = rows.len();
    let page: Vec<_> = rows.into_iter().skip(offset).take(limit).collect();
    let next_cursor = (offset + page.len() < total).then(|| {
        encode_cursor(&Cursor {
            o: offset + page.len(),
            q: query_digest.clone(),
        })
    });
    let body = serde_json::to_vec(&json!({
        "from": from.to_string(),
        "to": to.to_string(),
        "granularity": granularity.as_str(),
        "rows": page,
        "next_cursor": next_cursor,
    }))
    .map_err(|e| ApiError::internal("rendering the answer", e))?;
    let answer = Arc::new(CachedAnswer::new(body));
    if caught_up {
        app.answers.insert(key, answer.clone()).await;
    }
    Ok(respond(&answer, &headers))
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
#[utoipa::path(get, path = "/v1/campaigns", tag = "serving", description = "The tenant's known campaigns.",
    responses((status = 200, body = CampaignList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
pub async fn campaigns(State(app): State<App>, caller: Caller) -> Result<Response, ApiError> {
    let campaigns = app
        .store
        .campaigns(&caller.0.tenant)
        .await
        .map_err(|e| ApiError::internal("reading campaigns", e))?;
    Ok(Json(json!({ "campaigns": campaigns })).into_response())
}
