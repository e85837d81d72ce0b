//! `[[plugins]]`: WASM components (adapters and metrics) and their sandbox
//! limits. (The limits a plugin's calls run under are built in
//! `crate::plugin`, which depends on this module, not the reverse.)

use std::collections::HashSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::check::Issues;

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
        issues.sandbox_limits(
            &at,
            (
                Some(plugin.time_limit_ms),
                Some(plugin.memory_limit_mb),
                plugin.fuel,
            ),
            metered,
            ["the default is 2000", "the default is 128"],
        );
    }
}
