//! The Meta Marketing API adapter for adpipe.
//!
//! - Reports: `GET /act_{id}/insights` responses (level campaign, adset or ad,
//!   `time_increment=1`) become snapshot rows ([`report`]).
//! - Webhooks: Page `leadgen` changes become `leads` deltas deduplicated by
//!   `leadgen_id` ([`webhook`]); the host verifies `X-Hub-Signature-256`.
//! - Pulls: the insights request for an account and window ([`pull`]).
//!
//! Everything here is plain Rust that compiles natively (unit tests,
//! benchmarks); [`adpipe_plugin_sdk::export_adapter!`] makes it the component.

pub mod pull;
pub mod report;
pub mod webhook;

pub use adpipe_plugin_sdk::{
    AdapterInfo, ApiVersion, HandshakePlan, HttpRequest, OptionSpec, OptionType, ParseContext,
    PluginError, PullRequest, RowBatch, SignatureScheme, WebhookRequest,
};

/// The Meta adapter, as the component exports it.
pub struct Meta;

impl adpipe_plugin_sdk::Adapter for Meta {
    fn describe() -> AdapterInfo {
        describe()
    }
    fn handshake(query: &[(String, String)]) -> HandshakePlan {
        handshake(query)
    }
    fn parse_report(body: &[u8], ctx: &ParseContext) -> Result<RowBatch, PluginError> {
        parse_report(body, ctx)
    }
    fn parse_webhook(
        request: &WebhookRequest,
        ctx: &ParseContext,
    ) -> Result<RowBatch, PluginError> {
        parse_webhook(&request.body, ctx)
    }
    fn plan_pull(request: &PullRequest) -> Result<Vec<HttpRequest>, PluginError> {
        plan_pull(request)
    }
}

adpipe_plugin_sdk::export_adapter!(Meta);

/// Name, version, platform and capabilities.
pub fn describe() -> AdapterInfo {
    AdapterInfo {
        name: "meta".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        platform: "meta".into(),
        signature: SignatureScheme::HmacSha256 {
            header: "x-hub-signature-256".into(),
            header_prefix: "sha256=".into(),
            signed_prefix: String::new(),
        },
        allowed_hosts: vec!["graph.facebook.com".into()],
        default_lookback_days: 28,
        options: vec![
            OptionSpec::new(
                "level",
                OptionType::String,
                "insights level of scheduled pulls: campaign, adset or ad",
            )
            .default_value("ad"),
            OptionSpec::new(
                "conversion_action_types",
                OptionType::List,
                "action types summed as conversions (and their action_values as conversion value)",
            )
            .default_value(report::DEFAULT_CONVERSIONS),
            OptionSpec::new(
                "extra_action_types",
                OptionType::List,
                "action types kept as extra metrics actions_<type>",
            )
            .default_value(report::DEFAULT_EXTRAS),
        ],
        api_versions: pull::API_VERSIONS
            .iter()
            .map(|(name, sunset)| ApiVersion::new(name, *sunset))
            .collect(),
        extra_metrics: std::iter::once("leads".to_owned())
            .chain(
                report::DEFAULT_EXTRAS
                    .split(',')
                    .map(report::extra_metric_name),
            )
            .collect(),
    }
}

/// The subscription handshake: `hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`.
pub fn handshake(query: &[(String, String)]) -> HandshakePlan {
    let get = |k: &str| adpipe_plugin_sdk::option(query, k);
    match (
        get("hub.mode"),
        get("hub.verify_token"),
        get("hub.challenge"),
    ) {
        (Some("subscribe"), Some(token), Some(challenge)) => HandshakePlan::EchoIfToken {
            token: token.to_owned(),
            challenge: challenge.to_owned(),
        },
        (Some(mode), _, _) if mode != "subscribe" => {
            HandshakePlan::Reject(format!("hub.mode must be `subscribe`, not `{mode}`"))
        }
        (mode, token, challenge) => {
            let missing: Vec<&str> = [
                ("hub.mode", mode.is_none()),
                ("hub.verify_token", token.is_none()),
                ("hub.challenge", challenge.is_none()),
            ]
            .iter()
            .filter(|(_, m)| *m)
            .map(|(k, _)| *k)
            .collect();
            HandshakePlan::Reject(format!(
                "not a subscription handshake: missing {}",
                missing.join(", ")
            ))
        }
    }
}

/// Parse one insights response page.
pub fn parse_report(body: &[u8], ctx: &ParseContext) -> Result<RowBatch, PluginError> {
    report::parse(body, ctx)
}

/// Parse one webhook delivery.
pub fn parse_webhook(body: &[u8], ctx: &ParseContext) -> Result<RowBatch, PluginError> {
    webhook::parse(body, ctx)
}

/// Plan the insights request of a pull.
pub fn plan_pull(request: &PullRequest) -> Result<Vec<HttpRequest>, PluginError> {
    pull::plan(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn handshake_cases() {
        assert_eq!(
            handshake(&q(&[
                ("hub.mode", "subscribe"),
                ("hub.verify_token", "t"),
                ("hub.challenge", "42")
            ])),
            HandshakePlan::EchoIfToken {
                token: "t".into(),
                challenge: "42".into()
            }
        );
        match handshake(&q(&[("hub.mode", "subscribe")])) {
            HandshakePlan::Reject(reason) => {
                assert!(
                    reason.contains("hub.verify_token, hub.challenge"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            handshake(&q(&[
                ("hub.mode", "unsubscribe"),
                ("hub.verify_token", "t"),
                ("hub.challenge", "1")
            ])),
            HandshakePlan::Reject(_)
        ));
    }

    #[test]
    fn describes_itself() {
        let info = describe();
        assert_eq!(
            (info.name.as_str(), info.platform.as_str()),
            ("meta", "meta")
        );
        assert_eq!(info.default_lookback_days, 28);
    }
}
