//! The WIT side of [`crate::Metric`].

wit_bindgen::generate!({
    world: "metric-plugin",
    path: "../../../wit/0.2.0",
    pub_export_macro: true,
    export_macro_name: "export_metric_world",
    default_bindings_module: "adpipe_metric_sdk::component",
});

use std::marker::PhantomData;

use adpipe::plugin::types::{ErrorKind, PluginError};
use exports::adpipe::plugin::metric::{ComputeRequest, Guest, MetricInfo, MetricPluginInfo, Unit};

/// Wraps a [`crate::Metric`] as the component's exports.
pub struct Exported<M>(PhantomData<M>);

impl<M: crate::Metric> Guest for Exported<M> {
    fn describe() -> MetricPluginInfo {
        MetricPluginInfo {
            name: M::NAME.into(),
            version: M::VERSION.into(),
            metrics: M::METRICS
                .iter()
                .map(|m| MetricInfo {
                    name: m.name.into(),
                    unit: match m.unit {
                        crate::Unit::Ratio => Unit::Ratio,
                        crate::Unit::Currency => Unit::Currency,
                        crate::Unit::Count => Unit::Count,
                    },
                    description: m.description.into(),
                    inputs: m.inputs.iter().map(|i| i.to_string()).collect(),
                })
                .collect(),
        }
    }

    fn compute(request: ComputeRequest) -> Result<Vec<Option<f64>>, PluginError> {
        M::compute(
            &request.metrics,
            &request.columns,
            &request.values,
            request.row_count as usize,
        )
        .map_err(|message| PluginError {
            kind: ErrorKind::InvalidValue,
            path: String::new(),
            message,
        })
    }
}
