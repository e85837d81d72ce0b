//! Helpers for adpipe metric plugins (the `metric-plugin` world): implement
//! [`Metric`] with native types, then call [`export_metric!`]; the same code
//! runs natively in tests.
//!
//! Inputs arrive as an answer's summed components in millionths (counts × 10⁶,
//! money in micros), one row per answer row; outputs are one value per metric
//! per row, `None` where undefined (a zero denominator).

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)] // wit-bindgen's generated glue
#[doc(hidden)]
pub mod component;

/// How a metric's value reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Ratio,
    Currency,
    Count,
}

/// One metric a plugin computes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricInfo {
    pub name: &'static str,
    pub unit: Unit,
    pub description: &'static str,
    /// Components it needs (base metrics or extra metric names).
    pub inputs: &'static [&'static str],
}

/// A metric plugin, written against native types.
pub trait Metric {
    /// Plugin name.
    const NAME: &'static str;
    /// Plugin version.
    const VERSION: &'static str;
    /// The metrics offered.
    const METRICS: &'static [MetricInfo];

    /// One row's value of `metric`, reading components through `get` (millionths).
    fn value(metric: &str, get: &dyn Fn(&str) -> i64) -> Result<Option<f64>, String>;

    /// A whole answer, row-major: `rows × metrics.len()` values.
    fn compute(
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
        let mut out = Vec::with_capacity(metrics.len() * rows);
        for row in 0..rows {
            let cells = &values[row * width..(row + 1) * width];
            let get = |name: &str| {
                columns
                    .iter()
                    .position(|c| c == name)
                    .map(|i| cells[i])
                    .unwrap_or(0)
            };
            for metric in metrics {
                out.push(Self::value(metric, &get)?);
            }
        }
        Ok(out)
    }
}

/// `numerator / denominator`, `None` when the denominator is zero.
pub fn ratio(numerator: i64, denominator: i64) -> Option<f64> {
    (denominator != 0).then(|| numerator as f64 / denominator as f64)
}

/// Export a [`Metric`] implementation as the component's `metric` interface.
#[macro_export]
macro_rules! export_metric {
    ($metric:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type AdpipeExportedMetric = $crate::component::Exported<$metric>;
            $crate::component::export_metric_world!(AdpipeExportedMetric with_types_in $crate::component);
        };
    };
}
