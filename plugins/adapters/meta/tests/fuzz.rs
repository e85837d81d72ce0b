//! Arbitrary bytes and arbitrary JSON never panic the parsers; every
//! rejection is typed and says what is wrong.

use adpipe_plugin_meta::{parse_report, parse_webhook};
use adpipe_plugin_sdk::ParseContext;
use proptest::prelude::*;
use serde_json::{json, Value};

const KEYS: &[&str] = &[
    "data",
    "paging",
    "next",
    "entry",
    "changes",
    "field",
    "value",
    "leadgen_id",
    "ad_id",
    "account_id",
    "campaign_id",
    "date_start",
    "date_stop",
    "spend",
    "impressions",
    "actions",
    "action_type",
    "created_time",
    "error",
];

fn arbitrary_json() -> impl Strategy<Value = Value> {
    adpipe_plugin_sdk::testing::arbitrary_json(KEYS)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for result in [parse_report(&bytes, &ParseContext::default()), parse_webhook(&bytes, &ParseContext::default())] {
            if let Err(e) = result {
                prop_assert!(!e.message.is_empty());
            }
        }
    }

    #[test]
    fn arbitrary_json_never_panics(value in arbitrary_json()) {
        let bytes = serde_json::to_vec(&value).expect("encode");
        for result in [parse_report(&bytes, &ParseContext::default()), parse_webhook(&bytes, &ParseContext::default())] {
            if let Err(e) = result {
                prop_assert!(!e.message.is_empty(), "empty message for {value}");
            }
        }
    }

    #[test]
    fn arbitrary_rows_never_panic(rows in prop::collection::vec(arbitrary_json(), 0..5)) {
        let body = serde_json::to_vec(&json!({"data": rows})).expect("encode");
        if let Err(e) = parse_report(&body, &ParseContext::default()) {
            prop_assert!(!e.message.is_empty());
            prop_assert!(e.path.starts_with("/data") || e.path.is_empty(), "path {}", e.path);
        }
    }
}
