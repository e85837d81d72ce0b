//! Metric plugins: derived metrics computed from an answer's summed
//! components, one batch call per answer, under the same sandbox as adapters.

use std::path::Path;
use std::sync::Arc;

use wasmtime::Engine;

use super::bindings::metric::exports::adpipe::plugin::metric as wit_metric;
use super::bindings::{v0_1, v0_2};
use super::{
    classify, compat, sandboxed_store, Abi, CallError, Limits, LoadError, PluginState, Runtime,
};

pub use wit_metric::{ComputeRequest, MetricInfo, MetricPluginInfo, Unit};

/// A loaded metric plugin; cheap to clone.
#[derive(Clone)]
pub struct MetricPlugin {
    inner: Arc<Inner>,
}

/// A pre-instantiated metric plugin of one interface version.
enum MetricPre {
    Current(v0_2::metric::MetricPluginPre<PluginState>),
    V0_1(v0_1::metric::MetricPluginPre<PluginState>),
}

struct Inner {
    name: String,
    engine: Engine,
    pre: MetricPre,
    limits: Limits,
    info: MetricPluginInfo,
    content_hash: String,
}

impl Runtime {
    /// Compile, check and describe the metric plugin at `path`.
    pub fn load_metric(
        &self,
        name: &str,
        path: &Path,
        limits: Limits,
    ) -> Result<MetricPlugin, LoadError> {
        let invalid = |reason: String| LoadError::Invalid {
            name: name.into(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            name: name.into(),
            path: path.display().to_string(),
            source,
        })?;
        if let Some(reason) = super::not_a_component(&bytes) {
            return Err(invalid(reason));
        }
        let hash = super::content_hash(&bytes);
        let (component, _) = self
            .compile(&bytes, &hash, None)
            .map_err(|e| invalid(super::one_line(&format!("{e:#}"))))?;
        super::check_imports(&self.engine, &component).map_err(invalid)?;
        let abi = super::check_export(&self.engine, &component, "metric").map_err(invalid)?;
        let instance_pre = self
            .metric_linker
            .instantiate_pre(&component)
            .map_err(|e| invalid(format!("{e:#}")))?;
        let pre = match abi {
            Abi::V0_2 => MetricPre::Current(
                v0_2::metric::MetricPluginPre::new(instance_pre)
                    .map_err(|e| invalid(format!("{e:#}")))?,
            ),
            Abi::V0_1 => MetricPre::V0_1(
                v0_1::metric::MetricPluginPre::new(instance_pre)
                    .map_err(|e| invalid(format!("{e:#}")))?,
            ),
        };
        let mut store = sandboxed_store(&self.engine, name, limits);
        let info = match &pre {
            MetricPre::Current(pre) => pre
                .instantiate(&mut store)
                .and_then(|plugin| plugin.adpipe_plugin_metric().call_describe(&mut store)),
            MetricPre::V0_1(pre) => pre
                .instantiate(&mut store)
                .and_then(|plugin| plugin.adpipe_plugin_metric().call_describe(&mut store))
                .map(compat::metric::info),
        }
        .map_err(|e| invalid(format!("describe failed: {}", classify(e, name, limits))))?;
        if info.metrics.is_empty() {
            return Err(invalid("describe lists no metrics".into()));
        }
        Ok(MetricPlugin {
            inner: Arc::new(Inner {
                name: name.into(),
                engine: self.engine.clone(),
                pre,
                limits,
                info,
                content_hash: hash,
            }),
        })
    }
}

impl MetricPlugin {
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn info(&self) -> &MetricPluginInfo {
        &self.inner.info
    }

    pub fn content_hash(&self) -> &str {
        &self.inner.content_hash
    }

    /// The metric named `name`, if this plugin computes it.
    pub fn metric(&self, name: &str) -> Option<&MetricInfo> {
        self.inner.info.metrics.iter().find(|m| m.name == name)
    }

    /// Compute a whole answer's derived metrics in one call. Blocking.
    pub fn compute(&self, request: &ComputeRequest) -> Result<Vec<Option<f64>>, CallError> {
        let inner = &self.inner;
        let mut store = sandboxed_store(&inner.engine, &inner.name, inner.limits);
        let result = match &inner.pre {
            MetricPre::Current(pre) => pre.instantiate(&mut store).and_then(|plugin| {
                plugin
                    .adpipe_plugin_metric()
                    .call_compute(&mut store, request)
            }),
            MetricPre::V0_1(pre) => pre.instantiate(&mut store).and_then(|plugin| {
                plugin
                    .adpipe_plugin_metric()
                    .call_compute(&mut store, &compat::metric::request(request))
                    .map(|r| r.map_err(compat::error))
            }),
        }
        .map_err(|e| classify(e, &inner.name, inner.limits))?;
        let values = result.map_err(CallError::Rejected)?;
        let expected = request.metrics.len() * request.row_count as usize;
        if values.len() != expected {
            return Err(CallError::Trapped {
                plugin: inner.name.clone(),
                detail: format!(
                    "compute returned {} values, expected {expected}",
                    values.len()
                ),
            });
        }
        Ok(values)
    }
}
