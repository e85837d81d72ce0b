//! The metric catalog: what `/v1/insights?metrics=` may name and what each
//! metric means. `GET /v1/metrics` lists a tenant's catalog; the insights
//! route accepts exactly the names listed there.
//!
//! Units: `count` (a plain number), `currency` (money in major units of the
//! row's `currency`: 12.5 is USD 12.50) and `fraction` (0.025 is 2.5 %).

use serde::Serialize;

use crate::plugin::metric::{MetricInfo, Unit};

/// What a metric's values are measured in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricUnit {
    Count,
    Currency,
    Fraction,
}

/// Where a metric comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// A component adpipe sums from every platform's rows.
    Base,
    /// A ratio of summed components (`null` when its denominator is 0).
    Ratio,
    /// An additive metric some platform reports (leads, video views...).
    Extra,
    /// Computed from summed components by a metric plugin.
    Plugin,
}

/// One metric a tenant may ask for.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Metric {
    /// The name to pass in `metrics=`.
    pub name: String,
    pub title: String,
    pub unit: MetricUnit,
    pub kind: MetricKind,
    /// Computed from other metrics rather than summed (ratios, plugin metrics).
    pub derived: bool,
    pub description: String,
    /// The summed components it is computed from (empty for sums).
    pub inputs: Vec<String>,
    /// The metric plugin computing it (plugin metrics only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
}

fn builtin(
    name: &str,
    title: &str,
    unit: MetricUnit,
    kind: MetricKind,
    inputs: &[&str],
    description: &str,
) -> Metric {
    Metric {
        name: name.into(),
        title: title.into(),
        unit,
        kind,
        derived: kind == MetricKind::Ratio,
        description: description.into(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        plugin: None,
    }
}

/// The base sums and ratios every tenant has, in the order answers show them.
pub fn builtins() -> Vec<Metric> {
    use MetricKind::{Base, Ratio};
    use MetricUnit::{Count, Currency, Fraction};
    vec![
        builtin("impressions", "Impressions", Count, Base, &[], "Times an ad was shown."),
        builtin("clicks", "Clicks", Count, Base, &[], "Clicks as the platform counts them."),
        builtin("spend", "Spend", Currency, Base, &[], "Amount spent, in major units of `currency`."),
        builtin("conversions", "Conversions", Count, Base, &[], "Conversions as the platform attributes them; may be fractional (modelled conversions)."),
        builtin("conversion_value", "Conversion value", Currency, Base, &[], "Value of the conversions, in major units of `currency`."),
        builtin("ctr", "Click-through rate", Fraction, Ratio, &["clicks", "impressions"], "clicks / impressions."),
        builtin("cpc", "Cost per click", Currency, Ratio, &["spend", "clicks"], "spend / clicks."),
        builtin("cpm", "Cost per mille", Currency, Ratio, &["spend", "impressions"], "spend / impressions × 1000."),
        builtin("cpa", "Cost per acquisition", Currency, Ratio, &["spend", "conversions"], "spend / conversions."),
        builtin("cvr", "Conversion rate", Fraction, Ratio, &["conversions", "clicks"], "conversions / clicks."),
        builtin("roas", "Return on ad spend", Fraction, Ratio, &["conversion_value", "spend"], "conversion_value / spend (2.5 = 250 %)."),
    ]
}

/// An extra metric: an additive count a platform reports.
pub fn extra(name: &str) -> Metric {
    Metric {
        name: name.into(),
        title: title_of(name),
        unit: MetricUnit::Count,
        kind: MetricKind::Extra,
        derived: false,
        description: "An additive metric the platform reports, summed like impressions.".into(),
        inputs: vec![],
        plugin: None,
    }
}

/// A metric computed by metric plugin `plugin`.
pub fn plugin_metric(plugin: &str, info: &MetricInfo) -> Metric {
    Metric {
        name: info.name.clone(),
        title: title_of(&info.name),
        unit: match info.unit {
            Unit::Ratio => MetricUnit::Fraction,
            Unit::Currency => MetricUnit::Currency,
            Unit::Count => MetricUnit::Count,
        },
        kind: MetricKind::Plugin,
        derived: true,
        description: info.description.clone(),
        inputs: info.inputs.clone(),
        plugin: Some(plugin.into()),
    }
}

/// `cost_per_lead` → `Cost per lead`.
fn title_of(name: &str) -> String {
    let words = name.replace('_', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_the_base_and_ratio_metrics_in_answer_order() {
        let names: Vec<String> = builtins().into_iter().map(|m| m.name).collect();
        let expected: Vec<&str> = super::super::BASE_METRICS
            .iter()
            .chain(super::super::RATIO_METRICS.iter())
            .copied()
            .collect();
        assert_eq!(names, expected);
        assert!(builtins()
            .iter()
            .all(|m| m.derived == (m.kind == MetricKind::Ratio)));
    }

    #[test]
    fn extra_metric_titles_read_as_words() {
        assert_eq!(extra("video_play_actions").title, "Video play actions");
        assert_eq!(extra("leads").unit, MetricUnit::Count);
    }
}
