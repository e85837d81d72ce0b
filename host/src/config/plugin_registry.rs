//! `[plugin_registry]`: components deployed to the fleet through the shared
//! metadata store (`POST /v1/plugins/{name}/versions`, `adpipe plugin
//! deploy`) — whose signatures a deployment requires, and how often each host
//! reconciles with the registry besides being told of changes. (Not
//! `[plugins]`: that name is the array of `[[plugins]]` entries.)

use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::check::Issues;

/// `[plugin_registry]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct PluginRegistryConfig {
    /// Ed25519 public keys (base64 of the 32 raw bytes, as `adpipe plugin
    /// keygen` prints them). When set, a deployed component must carry a
    /// signature by one of them (`adpipe plugin sign`); the file-path reload
    /// is not affected.
    pub trusted_keys: Vec<String>,
    /// Seconds between reconciles with the registry (the safety net behind
    /// PostgreSQL `LISTEN/NOTIFY`; 1 to 3600).
    pub reconcile_seconds: u64,
}

impl Default for PluginRegistryConfig {
    fn default() -> Self {
        PluginRegistryConfig {
            trusted_keys: Vec::new(),
            reconcile_seconds: 10,
        }
    }
}

impl PluginRegistryConfig {
    /// The reconcile period.
    pub fn reconcile_every(&self) -> Duration {
        Duration::from_secs(self.reconcile_seconds)
    }

    /// The trusted keys, decoded (validation refused any other).
    pub fn keys(&self) -> Vec<[u8; 32]> {
        self.trusted_keys
            .iter()
            .filter_map(|k| decode_key(k))
            .collect()
    }

    /// `[plugin_registry]`'s mistakes.
    pub(super) fn validate(&self, issues: &mut Issues) {
        if !(1..=3600).contains(&self.reconcile_seconds) {
            issues.add(
                "plugin_registry.reconcile_seconds",
                "must be between 1 and 3600",
                "hosts are told of changes at once; this is only the safety net",
            );
        }
        for (i, key) in self.trusted_keys.iter().enumerate() {
            if decode_key(key).is_none() {
                issues.add(
                    format!("plugin_registry.trusted_keys[{i}]"),
                    "is not an Ed25519 public key (base64 of 32 bytes)",
                    "use the public key `adpipe plugin keygen` printed",
                );
            }
        }
    }
}

/// A base64 Ed25519 public key.
pub fn decode_key(text: &str) -> Option<[u8; 32]> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()?
        .try_into()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::super::tests::load;

    #[test]
    fn keys_and_the_period_are_checked() {
        let key = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
        let config = load(
            &format!("[plugin_registry]\ntrusted_keys = [\"{key}\"]\nreconcile_seconds = 5\n"),
            &[],
        )
        .expect("valid");
        assert_eq!(config.plugin_registry.keys().len(), 1);
        let issues = load(
            "[plugin_registry]\ntrusted_keys = [\"c2hvcnQ=\"]\nreconcile_seconds = 0\n",
            &[],
        )
        .expect_err("invalid");
        let text = format!("{issues:?}");
        assert!(text.contains("plugin_registry.trusted_keys[0]"), "{text}");
        assert!(text.contains("plugin_registry.reconcile_seconds"), "{text}");
    }
}
