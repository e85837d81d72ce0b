//! `[[pipelines]]`: one tenant's feed from one platform through one adapter,
//! and its scheduled pulls (`[pipelines.pull]`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Serialize};

use super::check::{is_currency, is_slug, Issues, SandboxLimits};
use super::{values, PluginConfig, PluginKind};

/// `[[pipelines]]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    pub name: String,
    pub tenant: String,
    /// Name of an adapter in `[[plugins]]`.
    pub adapter: String,
    /// Environment variable holding the webhook signing secret (app secret).
    #[serde(default)]
    pub webhook_secret_env: Option<String>,
    /// Environment variable holding the webhook verify token (handshake).
    #[serde(default)]
    pub verify_token_env: Option<String>,
    /// Account to assume when payloads do not name one.
    #[serde(default)]
    pub account_id: Option<String>,
    /// The accounts this pipeline's webhook deliveries may name (Meta pages,
    /// LinkedIn sponsored accounts, TikTok advertisers); a delivery naming
    /// another is refused (`403 account_not_allowed`) and dead-lettered.
    /// Unset: any account.
    #[serde(default)]
    pub webhook_accounts: Option<WebhookAccounts>,
    /// Currency to assume when payloads do not name one (ISO 4217).
    #[serde(default)]
    pub currency: Option<String>,
    /// The ad account's reporting time zone (IANA name): events such as leads
    /// are filed under their day there, and pull windows end on its "today".
    #[serde(default = "values::timezone::utc", with = "values::timezone")]
    pub timezone: chrono_tz::Tz,
    /// Metric plugins applied to this pipeline's answers.
    #[serde(default)]
    pub metrics: Vec<String>,
    /// Overrides of the adapter's per-call time limit for this pipeline.
    #[serde(default)]
    pub time_limit_ms: Option<u64>,
    /// Override of the adapter's memory limit for this pipeline.
    #[serde(default)]
    pub memory_limit_mb: Option<u64>,
    /// Override of the adapter's fuel budget (needs `sandbox.fuel = true`).
    #[serde(default)]
    pub fuel: Option<u64>,
    /// Scheduled pulls from the platform's report API.
    #[serde(default)]
    pub pull: Option<PullConfig>,
    /// Platform options handed to the adapter (as strings; numbers and
    /// booleans are accepted and passed in their TOML spelling).
    #[serde(default)]
    pub options: BTreeMap<String, OptionValue>,
}

/// `[pipelines.pull]`: fetch reports on a schedule; the plugin plans and
/// parses, the host does the I/O with credentials the plugin never sees.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PullConfig {
    /// Accounts to pull (platform account / customer / advertiser ids).
    pub accounts: Vec<String>,
    /// Interval between pulls (`30m`, `1h`, `1d`; at least a minute); unset =
    /// only on demand (`POST /v1/pipelines/{name}/pull`).
    #[serde(default, with = "values::interval")]
    pub every: Option<Duration>,
    /// Days re-fetched each time so restated figures are corrected; default:
    /// the plugin's (Meta 28, Google 14, LinkedIn 14, TikTok 7).
    #[serde(default)]
    pub lookback_days: Option<u32>,
    /// Base URL replacing the platform's (a proxy, or a local fake in tests);
    /// its host joins the plugin's allow-list.
    #[serde(default, with = "http_url")]
    pub base_url: Option<Url>,
    /// Environment variable holding the API token the host injects.
    #[serde(default)]
    pub credential_env: Option<String>,
    /// Further secret headers: header name → environment variable.
    #[serde(default)]
    pub header_envs: BTreeMap<String, String>,
    /// Safety bound on pages followed per account and run.
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
    /// Largest response body read per page, enforced while reading; a larger
    /// one fails the run and nothing of it is ingested.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
}

fn default_max_pages() -> u32 {
    1000
}

/// Default of `pull.max_response_bytes`: 64 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

fn default_max_response_bytes() -> u64 {
    DEFAULT_MAX_RESPONSE_BYTES
}

/// `webhook_accounts`: account ids in their canonical spelling (digits and
/// letters as the platform prints them; `act_123` and
/// `urn:li:sponsoredAccount:123` are written down as `123`), checked and
/// canonicalized once at load.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookAccounts(BTreeSet<String>);

impl WebhookAccounts {
    /// Whether `account` (in any of its spellings) is listed.
    pub fn allows(&self, account: &str) -> bool {
        self.0.contains(canonical_account(account))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl FromIterator<String> for WebhookAccounts {
    fn from_iter<I: IntoIterator<Item = String>>(accounts: I) -> Self {
        WebhookAccounts(
            accounts
                .into_iter()
                .map(|a| canonical_account(&a).to_owned())
                .collect(),
        )
    }
}

/// An account id without the platform's decorations: `act_123` (Meta ad
/// accounts) and `urn:li:sponsoredAccount:123` (LinkedIn URNs) are `123`.
pub fn canonical_account(account: &str) -> &str {
    let account = account.trim();
    if let Some(rest) = account.strip_prefix("urn:li:") {
        return rest.rsplit(':').next().unwrap_or(rest);
    }
    account.strip_prefix("act_").unwrap_or(account)
}

impl<'de> Deserialize<'de> for WebhookAccounts {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let list = Vec::<String>::deserialize(deserializer)?;
        for account in &list {
            let id = canonical_account(account);
            if id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(values::invalid(
                    format_args!("`{account}` is not an account id"),
                    "list page, ad account or advertiser ids, e.g. [\"1234567890\"]",
                ));
            }
        }
        Ok(list.into_iter().collect())
    }
}

impl Serialize for WebhookAccounts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(&self.0)
    }
}

/// A pipeline option's value: any TOML scalar, handed to plugins as text.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum OptionValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl fmt::Display for OptionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionValue::Text(s) => f.write_str(s),
            OptionValue::Integer(i) => write!(f, "{i}"),
            OptionValue::Float(x) => write!(f, "{x}"),
            OptionValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// Every pipeline's mistakes: names, the plugins it uses (declared in
/// `plugins`), its limits (`metered` = `sandbox.fuel`) and its pulls.
pub(super) fn validate(
    pipelines: &[PipelineConfig],
    plugins: &[PluginConfig],
    metered: bool,
    issues: &mut Issues,
) {
    let declared =
        |name: &str, kind: PluginKind| plugins.iter().any(|p| p.name == name && p.kind == kind);
    let mut names = HashSet::new();
    for (i, pipeline) in pipelines.iter().enumerate() {
        let at = format!("pipelines[{i}]");
        issues.name(
            &format!("{at}.name"),
            &pipeline.name,
            &mut names,
            "pipeline",
            "use lowercase letters, digits, '-' and '_' (it appears in URLs)",
        );
        if !is_slug(&pipeline.tenant) {
            issues.add(
                format!("{at}.tenant"),
                format!("`{}` is not a valid tenant id", pipeline.tenant),
                "use lowercase letters, digits, '-' and '_'",
            );
        }
        if !declared(&pipeline.adapter, PluginKind::Adapter) {
            let known: Vec<_> = plugins
                .iter()
                .filter(|p| p.kind == PluginKind::Adapter)
                .map(|p| p.name.as_str())
                .collect();
            issues.add(
                format!("{at}.adapter"),
                format!("no plugin named `{}`", pipeline.adapter),
                &format!(
                    "declare it in [[plugins]] (known: {})",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
        for (key, value) in [
            ("webhook_secret_env", &pipeline.webhook_secret_env),
            ("verify_token_env", &pipeline.verify_token_env),
        ] {
            if let Some(name) = value {
                issues.env_name(
                    format!("{at}.{key}"),
                    name,
                    "name the variable that holds the secret (e.g. META_APP_SECRET), never the secret itself",
                );
            }
        }
        if pipeline
            .webhook_accounts
            .as_ref()
            .is_some_and(WebhookAccounts::is_empty)
        {
            issues.add(
                format!("{at}.webhook_accounts"),
                "an empty list would refuse every delivery that names an account",
                "list the accounts the pipeline's webhooks may name, or leave it unset to accept any",
            );
        }
        if let Some(currency) = &pipeline.currency {
            if !is_currency(currency) {
                issues.add(
                    format!("{at}.currency"),
                    format!("`{currency}` is not an ISO 4217 code"),
                    "use three capital letters, e.g. USD",
                );
            }
        }
        let leave_unset = "leave unset for the plugin's limit";
        let overrides = SandboxLimits {
            time_limit_ms: pipeline.time_limit_ms,
            memory_limit_mb: pipeline.memory_limit_mb,
            fuel: pipeline.fuel,
        };
        issues.sandbox_limits(&at, overrides, metered, [leave_unset, leave_unset]);
        if let Some(pull) = &pipeline.pull {
            pull.validate(&format!("{at}.pull"), issues);
        }
        for name in &pipeline.metrics {
            if !declared(name, PluginKind::Metric) {
                issues.add(
                    format!("{at}.metrics"),
                    format!("no metric plugin named `{name}`"),
                    "declare it in [[plugins]] with kind = \"metric\"; ratios (ctr, cpc, cpm, cpa, cvr, roas) are built in",
                );
            }
        }
    }
}

impl PullConfig {
    /// `[pipelines.pull]`'s mistakes, under `at` (`pipelines[i].pull`).
    fn validate(&self, at: &str, issues: &mut Issues) {
        if self.accounts.is_empty() || self.accounts.iter().any(|a| a.trim().is_empty()) {
            issues.add(
                format!("{at}.accounts"),
                "name at least one account, none empty",
                "e.g. accounts = [\"1234567890\"]",
            );
        }
        if let Some(days) = self.lookback_days {
            issues.within(
                format!("{at}.lookback_days"),
                days,
                1..=400,
                "leave unset for the platform's default",
            );
        }
        let envs = self
            .credential_env
            .iter()
            .map(|e| ("credential_env".to_owned(), e));
        let headers = self
            .header_envs
            .iter()
            .map(|(h, e)| (format!("header_envs.{h}"), e));
        for (key, name) in envs.chain(headers) {
            issues.env_name(
                format!("{at}.{key}"),
                name,
                "name the variable that holds the token, never the token itself",
            );
        }
        issues.at_least(
            format!("{at}.max_pages"),
            self.max_pages,
            1,
            "the default is 1000",
        );
        issues.within(
            format!("{at}.max_response_bytes"),
            self.max_response_bytes,
            1024..=(4u64 << 30),
            "the default is 67108864 (64 MiB); at most 4294967296 (4 GiB)",
        );
    }
}

/// `pull.base_url`: an absolute http(s) URL with a host.
mod http_url {
    use reqwest::Url;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Url>, D::Error> {
        let text = String::deserialize(deserializer)?;
        match Url::parse(&text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
                Ok(Some(url))
            }
            _ => Err(super::values::invalid(
                format_args!("`{text}` is not an http(s) URL"),
                "e.g. http://127.0.0.1:9000",
            )),
        }
    }

    pub fn serialize<S: Serializer>(url: &Option<Url>, serializer: S) -> Result<S::Ok, S::Error> {
        match url {
            Some(url) => serializer.serialize_some(url.as_str()),
            None => serializer.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load, META};

    #[test]
    fn webhook_accounts_are_checked_and_canonical_at_load() {
        let config = load(
            &format!(
                "{META}webhook_accounts = [\"104383482312345\", \"act_42\", \"urn:li:sponsoredAccount:509876\"]\n"
            ),
            &[],
        )
        .expect("valid");
        let accounts = config.pipelines[0]
            .webhook_accounts
            .as_ref()
            .expect("listed");
        assert_eq!(
            accounts.iter().collect::<Vec<_>>(),
            vec!["104383482312345", "42", "509876"]
        );
        for spelling in ["42", "act_42", "509876", "urn:li:sponsoredAccount:509876"] {
            assert!(accounts.allows(spelling), "{spelling}");
        }
        assert!(!accounts.allows("43"));
        assert!(load(META, &[]).expect("valid").pipelines[0]
            .webhook_accounts
            .is_none());

        let text = load(&format!("{META}webhook_accounts = []\n"), &[])
            .expect_err("empty")
            .to_string();
        assert!(
            text.contains(
                "pipelines[0].webhook_accounts: an empty list would refuse every delivery"
            ),
            "{text}"
        );
        let text = load(&format!("{META}webhook_accounts = [\"12 34\"]\n"), &[])
            .expect_err("not an id")
            .to_string();
        assert!(
            text.contains("webhook_accounts") && text.contains("`12 34` is not an account id"),
            "{text}"
        );
    }

    #[test]
    fn plugin_call_slots_are_bounded() {
        let text = load(
            &META.replace(
                "path = \"meta.wasm\"\n",
                "path = \"meta.wasm\"\nmax_concurrent_calls = 0\n",
            ),
            &[],
        )
        .expect_err("zero slots")
        .to_string();
        assert!(
            text.contains("plugins[0].max_concurrent_calls: must be between 1 and 256"),
            "{text}"
        );
    }
}
