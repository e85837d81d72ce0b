//! Metric plugin `leads`: cost per lead, cost per result and lead rate,
//! computed from summed components (never averaged).
//!
//! Inputs are the answer's summed components in millionths: `spend`
//! (micros of the row's currency), `clicks`, and the extra metrics `leads`
//! (webhook-delivered leads) and `result` (TikTok results).

/// One metric this plugin computes.
pub struct MetricInfo {
    pub name: &'static str,
    /// `ratio`, `currency` or `count`.
    pub unit: &'static str,
    pub description: &'static str,
    pub inputs: &'static [&'static str],
}

pub const METRICS: &[MetricInfo] = &[
    MetricInfo {
        name: "cost_per_lead",
        unit: "currency",
        description: "spend / leads",
        inputs: &["spend", "leads"],
    },
    MetricInfo {
        name: "cost_per_result",
        unit: "currency",
        description: "spend / results (TikTok's optimisation events)",
        inputs: &["spend", "result"],
    },
    MetricInfo {
        name: "lead_rate",
        unit: "ratio",
        description: "leads / clicks",
        inputs: &["leads", "clicks"],
    },
];

fn ratio(numerator: i64, denominator: i64) -> Option<f64> {
    (denominator != 0).then(|| numerator as f64 / denominator as f64)
}

/// Compute `metrics` for `rows` rows of `columns` (row-major, millionths).
pub fn compute(
    metrics: &[String],
    columns: &[String],
    values: &[i64],
    rows: usize,
) -> Result<Vec<Option<f64>>, String> {
    let width = columns.len();
    if values.len() != width * rows {
        return Err(format!(
            "{} values for {rows} rows of {width} columns",
            values.len()
        ));
    }
    let column = |name: &str| columns.iter().position(|c| c == name);
    let mut out = Vec::with_capacity(metrics.len() * rows);
    for row in values.chunks(width.max(1)).take(rows) {
        let get = |name: &str| column(name).map(|i| row[i]).unwrap_or(0);
        for metric in metrics {
            out.push(match metric.as_str() {
                "cost_per_lead" => ratio(get("spend"), get("leads")),
                "cost_per_result" => ratio(get("spend"), get("result")),
                "lead_rate" => ratio(get("leads"), get("clicks")),
                other => return Err(format!("unknown metric `{other}`")),
            });
        }
    }
    Ok(out)
}

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)] // wit-bindgen's generated glue
mod component {
    wit_bindgen::generate!({ world: "metric-plugin", path: "../../wit" });
    use exports::adpipe::plugin::metric::{
        ComputeRequest, Guest, MetricInfo, MetricPluginInfo, Unit,
    };

    struct Leads;

    impl Guest for Leads {
        fn describe() -> MetricPluginInfo {
            MetricPluginInfo {
                name: "leads".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                metrics: super::METRICS
                    .iter()
                    .map(|m| MetricInfo {
                        name: m.name.into(),
                        unit: match m.unit {
                            "ratio" => Unit::Ratio,
                            "currency" => Unit::Currency,
                            _ => Unit::Count,
                        },
                        description: m.description.into(),
                        inputs: m.inputs.iter().map(|i| i.to_string()).collect(),
                    })
                    .collect(),
            }
        }

        fn compute(
            request: ComputeRequest,
        ) -> Result<Vec<Option<f64>>, adpipe::plugin::types::PluginError> {
            super::compute(
                &request.metrics,
                &request.columns,
                &request.values,
                request.row_count as usize,
            )
            .map_err(|message| adpipe::plugin::types::PluginError {
                kind: adpipe::plugin::types::ErrorKind::InvalidValue,
                path: String::new(),
                message,
            })
        }
    }

    export!(Leads);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_come_from_summed_components() {
        let columns = ["spend", "leads", "result", "clicks"]
            .map(String::from)
            .to_vec();
        // Row 1: 30 spend, 4 leads, 3 results, 80 clicks; row 2: nothing but spend.
        let values = vec![
            30_000_000, 4_000_000, 3_000_000, 80_000_000, 5_000_000, 0, 0, 0,
        ];
        let metrics = ["cost_per_lead", "cost_per_result", "lead_rate"]
            .map(String::from)
            .to_vec();
        let out = compute(&metrics, &columns, &values, 2).expect("compute");
        assert_eq!(
            out,
            vec![Some(7.5), Some(10.0), Some(0.05), None, None, None]
        );
        assert!(compute(&["nope".into()], &columns, &values, 2).is_err());
        assert!(compute(&metrics, &columns, &values[..3], 2).is_err());
    }
}
