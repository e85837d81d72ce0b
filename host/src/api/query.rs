//! Serving routes: `GET /v1/insights` and `GET /v1/campaigns`, always scoped
//! to the caller's tenant.
//!
//! Read-your-writes: an insights request first waits (briefly) until every
//! row durable on the bus when it arrived has been applied, so a dashboard
//! that just got `202` sees its data.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::NaiveDate;
use serde_json::json;

use super::{ApiError, Caller};
use crate::aggregate::{self, Dimension, Granularity, Rollup, BASE_METRICS, RATIO_METRICS};
use crate::app::App;
use crate::auth::Role;
use crate::store::FactFilter;

const INSIGHTS_PARAMS: [&str; 9] = [
    "from",
    "to",
    "granularity",
    "group_by",
    "platform",
    "account_id",
    "campaign_id",
    "metrics",
    "currency",
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

/// `GET /v1/insights`.
pub async fn insights(
    State(app): State<App>,
    caller: Caller,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(Role::Viewer)?;
    let tenant = &caller.0.tenant;
    let Query(query) = query.map_err(|e| ApiError::invalid_parameter("query", e.body_text()))?;
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
        platforms: query.get("platform").map(|v| comma_list(v)),
        account_ids: query.get("account_id").map(|v| comma_list(v)),
        campaign_ids: query.get("campaign_id").map(|v| comma_list(v)),
    };
    let currency_filter = query.get("currency").map(|v| comma_list(v));

    app.store
        .wait_applied(app.bus.head(), CONSISTENCY_WAIT)
        .await;
    let extras = app
        .store
        .extra_metric_names(tenant)
        .await
        .map_err(|e| ApiError::internal("reading metric names", e))?;
    let plugin_metrics = app.tenant_metrics(tenant);
    let metrics = match query.get("metrics") {
        None => BASE_METRICS
            .iter()
            .chain(RATIO_METRICS.iter())
            .map(|m| m.to_string())
            .collect(),
        Some(list) => {
            let list = comma_list(list);
            if list.is_empty() {
                return Err(ApiError::invalid_parameter(
                    "metrics",
                    "must name at least one metric",
                ));
            }
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

    let (from_day, to_day) = (aggregate::days_of(from), aggregate::days_of(to));
    let snapshots = app
        .store
        .snapshots(tenant, from_day, to_day, &filter)
        .await
        .map_err(|e| ApiError::internal("reading facts", e))?;
    let deltas = app
        .store
        .deltas(tenant, from_day, to_day, &filter)
        .await
        .map_err(|e| ApiError::internal("reading deltas", e))?;
    let keep = |f: &aggregate::Fact| {
        currency_filter
            .as_ref()
            .is_none_or(|c| c.contains(&f.currency))
    };
    let snapshots: Vec<_> = snapshots.into_iter().filter(keep).collect();
    let deltas: Vec<_> = deltas.into_iter().filter(keep).collect();
    let spec = Rollup {
        granularity,
        group_by,
        metrics,
    };
    let groups = aggregate::rollup_groups(&snapshots, &deltas, &spec);
    let derived = derive(&plugin_metrics, &spec.metrics, &groups).await?;
    let rows = aggregate::render(groups, &spec.metrics, &derived);
    let mut response = Json(json!({
        "from": from.to_string(),
        "to": to.to_string(),
        "granularity": granularity.as_str(),
        "rows": rows,
    }))
    .into_response();
    response.headers_mut().insert(
        "cache-control",
        HeaderValue::from_static("private, no-cache"),
    );
    Ok(response)
}

/// Metric plugins' values for the requested plugin metrics: one batch call
/// per plugin for the whole answer, off the async runtime.
async fn derive(
    plugins: &std::collections::BTreeMap<String, crate::plugin::metric::MetricPlugin>,
    metrics: &[String],
    groups: &[aggregate::Group],
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
        let values = tokio::task::spawn_blocking(move || worker.compute(&request))
            .await
            .map_err(|e| ApiError::internal("metric plugin task failed", e))?
            .map_err(|e| {
                ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "metric_plugin_failed",
                    format!("metric plugin `{}`: {e}", plugin.name()),
                )
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
pub async fn campaigns(State(app): State<App>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(Role::Viewer)?;
    let campaigns = app
        .store
        .campaigns(&caller.0.tenant)
        .await
        .map_err(|e| ApiError::internal("reading campaigns", e))?;
    Ok(Json(json!({ "campaigns": campaigns })).into_response())
}
