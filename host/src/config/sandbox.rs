//! `[sandbox]`: engine-wide plugin settings.

use serde::{Deserialize, Serialize};

/// `[sandbox]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Meter instructions, so plugins and pipelines may set `fuel` budgets
    /// (costs every call some speed; off by default).
    pub fuel: bool,
}
