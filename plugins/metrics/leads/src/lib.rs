//! Metric plugin `leads`: cost per lead, cost per result and lead rate,
//! computed from summed components (never averaged).
//!
//! Inputs: `spend` (micros of the row's currency), `clicks`, and the extra
//! metrics `leads` (webhook-delivered leads) and `result` (TikTok results).

use adpipe_metric_sdk::{ratio, Metric, MetricInfo, Unit};

pub struct Leads;

impl Metric for Leads {
    const NAME: &'static str = "leads";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo {
            name: "cost_per_lead",
            unit: Unit::Currency,
            description: "spend / leads",
            inputs: &["spend", "leads"],
        },
        MetricInfo {
            name: "cost_per_result",
            unit: Unit::Currency,
            description: "spend / results (TikTok's optimisation events)",
            inputs: &["spend", "result"],
        },
        MetricInfo {
            name: "lead_rate",
            unit: Unit::Ratio,
            description: "leads / clicks",
            inputs: &["leads", "clicks"],
        },
    ];

    fn value(metric: &str, get: &dyn Fn(&str) -> i64) -> Result<Option<f64>, String> {
        Ok(match metric {
            "cost_per_lead" => ratio(get("spend"), get("leads")),
            "cost_per_result" => ratio(get("spend"), get("result")),
            "lead_rate" => ratio(get("leads"), get("clicks")),
            other => return Err(format!("unknown metric `{other}`")),
        })
    }
}

adpipe_metric_sdk::export_metric!(Leads);

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
        let out = Leads::compute(&metrics, &columns, &values, 2).expect("compute");
        assert_eq!(
            out,
            vec![Some(7.5), Some(10.0), Some(0.05), None, None, None]
        );
        assert!(Leads::compute(&["nope".into()], &columns, &values, 2).is_err());
        assert!(Leads::compute(&metrics, &columns, &values[..3], 2).is_err());
    }
}
