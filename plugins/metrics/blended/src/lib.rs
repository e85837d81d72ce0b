//! Metric plugin `blended`: figures that mean the same across platforms,
//! computed from summed components.
//!
//! - `blended_leads`: leads however the platform reports them — webhook
//!   leads (`leads`), Meta lead actions (`actions_lead`), LinkedIn one-click
//!   leads (`one_click_leads`).
//! - `blended_cpl`: spend / blended leads.
//! - `mer`: marketing efficiency ratio, conversion value / spend over
//!   whatever the answer groups (all platforms when not grouped by platform).

use adpipe_metric_sdk::{ratio, Metric, MetricInfo, Unit};

const LEAD_SOURCES: [&str; 3] = ["leads", "actions_lead", "one_click_leads"];

pub struct Blended;

impl Metric for Blended {
    const NAME: &'static str = "blended";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const METRICS: &'static [MetricInfo] = &[
        MetricInfo {
            name: "blended_leads",
            unit: Unit::Count,
            description: "webhook leads + Meta lead actions + LinkedIn one-click leads",
            inputs: &["leads", "actions_lead", "one_click_leads"],
        },
        MetricInfo {
            name: "blended_cpl",
            unit: Unit::Currency,
            description: "spend / blended leads",
            inputs: &["spend", "leads", "actions_lead", "one_click_leads"],
        },
        MetricInfo {
            name: "mer",
            unit: Unit::Ratio,
            description: "conversion value / spend",
            inputs: &["conversion_value", "spend"],
        },
    ];

    fn value(metric: &str, get: &dyn Fn(&str) -> i64) -> Result<Option<f64>, String> {
        let leads: i64 = LEAD_SOURCES.iter().map(|s| get(s)).sum();
        Ok(match metric {
            "blended_leads" => Some(leads as f64 / 1_000_000.0),
            "blended_cpl" => ratio(get("spend"), leads),
            "mer" => ratio(get("conversion_value"), get("spend")),
            other => return Err(format!("unknown metric `{other}`")),
        })
    }
}

adpipe_metric_sdk::export_metric!(Blended);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blends_lead_sources_and_computes_mer() {
        let columns = [
            "spend",
            "conversion_value",
            "leads",
            "actions_lead",
            "one_click_leads",
        ]
        .map(String::from)
        .to_vec();
        let values = vec![
            100_000_000,
            450_000_000,
            2_000_000,
            3_000_000,
            5_000_000,
            0,
            0,
            0,
            0,
            0,
        ];
        let metrics = ["blended_leads", "blended_cpl", "mer"]
            .map(String::from)
            .to_vec();
        let out = Blended::compute(&metrics, &columns, &values, 2).expect("compute");
        assert_eq!(
            out,
            vec![Some(10.0), Some(10.0), Some(4.5), Some(0.0), None, None]
        );
    }
}
