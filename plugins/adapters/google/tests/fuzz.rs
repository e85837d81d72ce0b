//! Arbitrary bytes and JSON never panic the parser; rejections say what is wrong.

use adpipe_plugin_google::parse_report;
use adpipe_plugin_sdk::ParseContext;
use proptest::prelude::*;

const KEYS: &[&str] = &[
    "results",
    "nextPageToken",
    "customer",
    "campaign",
    "adGroup",
    "adGroupAd",
    "ad",
    "metrics",
    "segments",
    "id",
    "resourceName",
    "currencyCode",
    "date",
    "hour",
    "impressions",
    "clicks",
    "costMicros",
    "conversions",
    "conversionsValue",
    "error",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = parse_report(&bytes, &ParseContext::default()) {
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn arbitrary_json_never_panics(value in adpipe_plugin_sdk::testing::arbitrary_json(KEYS)) {
        for body in [serde_json::json!([{"results": [value.clone()]}]), serde_json::json!({"results": [value.clone()]}), value] {
            if let Err(e) = parse_report(&serde_json::to_vec(&body).expect("encode"), &ParseContext::default()) {
                prop_assert!(!e.message.is_empty());
            }
        }
    }
}
