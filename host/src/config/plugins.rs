//! `[[plugins]]`: WASM components (adapters and metrics) and their sandbox
//! limits. (The limits a plugin's calls run under are built in
//! `crate::plugin`, which depends on this module, not the reverse.)

use std::collections::HashSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::check::{Issues, SandboxLimits};

/// `[[plugins]]`: a WASM component and its sandbox limits.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    pub name: String,
    /// Path to the `.wasm` component, relative to the config file.
    pub path: PathBuf,
    /// Wall-clock limit of one call.
    #[serde(default = "default_time_limit_ms")]
    pub time_limit_ms: u64,
    /// Linear-memory limit of one instance.
    #[serde(default = "default_memory_limit_mb")]
    pub memory_limit_mb: u64,
    /// Instruction budget per call (needs `sandbox.fuel = true`).
    #[serde(default)]
    pub fuel: Option<u64>,
    /// `adapter` (platform payloads → rows) or `metric` (derived metrics).
    #[serde(default)]
    pub kind: PluginKind,
    /// Concurrent calls into this plugin (every pipeline and call path
    /// together); a call that finds them all taken for a second is answered
    /// `503 plugin_busy`. Default: twice the CPU count.
    #[serde(default)]
    pub max_concurrent_calls: Option<u32>,
}

/// What a plugin does.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    #[default]
    Adapter,
    Metric,
}

fn default_time_limit_ms() -> u64 {
    2_000
}
fn default_memory_limit_mb() -> u64 {
    128
}

/// Every plugin's mistakes; `metered` = `sandbox.fuel`.
pub(super) fn validate(plugins: &[PluginConfig], metered: bool, issues: &mut Issues) {
    let mut names = HashSet::new();
    for (i, plugin) in plugins.iter().enumerate() {
        let at = format!("plugins[{i}]");
        issues.name(
            &format!("{at}.name"),
            &plugin.name,
            &mut names,
            "plugin",
            "use lowercase letters, digits, '-' and '_'",
        );
        if !plugin.path.exists() {
            issues.add(
                format!("{at}.path"),
                format!("`{}` does not exist", plugin.path.display()),
                "build the plugins first: scripts/build-plugins (or use the README's run command)",
            );
        }
        let limits = SandboxLimits {
            time_limit_ms: Some(plugin.time_limit_ms),
            memory_limit_mb: Some(plugin.memory_limit_mb),
            fuel: plugin.fuel,
        };
        issues.sandbox_limits(
            &at,
            limits,
            metered,
            ["the default is 2000", "the default is 128"],
        );
        if let Some(n) = plugin.max_concurrent_calls {
            issues.within(
                format!("{at}.max_concurrent_calls"),
                n,
                1..=256,
                "leave unset for twice the CPU count",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load, META};

    #[test]
    fn plugins_and_pipeline_overrides_share_the_sandbox_bounds() {
        let text = load(
            &format!(
                "{}\ntime_limit_ms = 5\nmemory_limit_mb = 5000\nfuel = 10\n",
                META.replace(
                    "path = \"meta.wasm\"\n",
                    "path = \"meta.wasm\"\ntime_limit_ms = 700000\nmemory_limit_mb = 0\nfuel = 1\n"
                )
            ),
            &[],
        )
        .expect_err("out of bounds")
        .to_string();
        for expected in [
            "plugins[0].time_limit_ms: must be between 10 and 600000\n    hint: the default is 2000",
            "plugins[0].memory_limit_mb: must be between 1 and 4096\n    hint: the default is 128",
            "plugins[0].fuel: a fuel budget needs fuel metering",
            "pipelines[0].time_limit_ms: must be between 10 and 600000\n    hint: leave unset",
            "pipelines[0].memory_limit_mb: must be between 1 and 4096\n    hint: leave unset",
            "pipelines[0].fuel: a fuel budget needs fuel metering",
        ] {
            assert!(text.contains(expected), "`{expected}` missing in {text}");
        }
        let metered = format!("[sandbox]\nfuel = true\n{META}fuel = 10\n");
        assert_eq!(
            load(&metered, &[]).expect("valid").pipelines[0].fuel,
            Some(10)
        );
    }

    #[test]
    fn a_name_is_declared_once() {
        let text = load(
            &format!("{META}[[plugins]]\nname = \"meta\"\npath = \"meta.wasm\"\n"),
            &[],
        )
        .expect_err("twice")
        .to_string();
        assert!(
            text.contains("plugins[1].name: plugin `meta` is declared twice"),
            "{text}"
        );
    }
}
