#![cfg(target_arch = "wasm32")]
//! A deliberately bad adapter for the host's isolation and reload tests. The
//! report body picks the misbehaviour: `panic`, `loop`, `oom`, `recurse`;
//! `fine:<campaign>` (or anything else) yields one valid snapshot row for that
//! campaign. Its version is set at build time (`ADPIPE_TEST_PLUGIN_VERSION`),
//! so two builds can stand in for an old and a new release.
#![allow(unsafe_code)] // wit-bindgen's generated glue

// Built against the frozen 0.1.0 interface on purpose: the host's isolation
// and reload tests then run through its 0.1.0 compatibility layer as well.
wit_bindgen::generate!({ world: "adapter-plugin", path: "../../../wit/0.1.0" });

use adpipe::plugin::types::{Date, HttpRequest, ParseContext, PluginError, Row, RowBatch, RowKind};
use exports::adpipe::plugin::adapter::{
    AdapterInfo, Guest, HandshakePlan, PullRequest, SignatureScheme, WebhookRequest,
};

struct Misbehaving;

fn recurse(depth: u64) -> u64 {
    let pad = [depth; 64];
    if depth == u64::MAX {
        return pad[0];
    }
    recurse(depth + 1).wrapping_add(std::hint::black_box(pad)[1])
}

impl Guest for Misbehaving {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            name: "misbehaving".into(),
            version: option_env!("ADPIPE_TEST_PLUGIN_VERSION")
                .unwrap_or("0.0.1")
                .into(),
            platform: "test".into(),
            signature: SignatureScheme::None,
            allowed_hosts: vec![],
            default_lookback_days: 1,
        }
    }

    fn handshake(_query: Vec<(String, String)>) -> HandshakePlan {
        HandshakePlan::Reject("no handshake".into())
    }

    fn parse_webhook(
        request: WebhookRequest,
        context: ParseContext,
    ) -> Result<RowBatch, PluginError> {
        Self::parse_report(request.body, context)
    }

    fn parse_report(body: Vec<u8>, _context: ParseContext) -> Result<RowBatch, PluginError> {
        match body.as_slice() {
            b"panic" => panic!("misbehaving plugin panics on purpose"),
            b"loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            b"oom" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            b"recurse" => {
                let n = recurse(0);
                Err(PluginError {
                    kind: adpipe::plugin::types::ErrorKind::Unsupported,
                    path: String::new(),
                    message: n.to_string(),
                })
            }
            other => Ok(RowBatch {
                strings: vec![
                    "acct".into(),
                    std::str::from_utf8(other)
                        .ok()
                        .and_then(|t| t.strip_prefix("fine:"))
                        .unwrap_or("camp")
                        .to_owned(),
                    "USD".into(),
                ],
                rows: vec![Row {
                    kind: RowKind::Snapshot,
                    account_id: Some(0),
                    campaign_id: Some(1),
                    campaign_name: None,
                    ad_group_id: None,
                    ad_id: None,
                    date: Date {
                        year: 2026,
                        month: 11,
                        day: 1,
                    },
                    hour: None,
                    currency: Some(2),
                    // The "fixed" release (0.0.2) counts twice the impressions:
                    // replaying old payloads through it must change totals.
                    impressions: if option_env!("ADPIPE_TEST_PLUGIN_VERSION") == Some("0.0.2") {
                        200
                    } else {
                        100
                    },
                    clicks: 3,
                    spend_micros: 1_500_000,
                    conversions_micros: 0,
                    conversion_value_micros: 0,
                    observed_at_ms: None,
                    dedup_key: None,
                }],
                extras: vec![],
                notices: vec![],
                next_page: None,
            }),
        }
    }

    fn plan_pull(_request: PullRequest) -> Result<Vec<HttpRequest>, PluginError> {
        Ok(vec![])
    }
}

export!(Misbehaving);
