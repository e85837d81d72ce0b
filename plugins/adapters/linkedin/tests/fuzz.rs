//! Arbitrary bytes and JSON never panic the parser; rejections say what is wrong.

use adpipe_plugin_linkedin::{parse_report, parse_webhook};
use adpipe_plugin_sdk::ParseContext;
use proptest::prelude::*;

const KEYS: &[&str] = &[
    "elements",
    "paging",
    "links",
    "rel",
    "href",
    "dateRange",
    "start",
    "end",
    "year",
    "month",
    "day",
    "pivotValues",
    "pivotValue",
    "impressions",
    "clicks",
    "costInLocalCurrency",
    "externalWebsiteConversions",
    "conversionValueInLocalCurrency",
    "type",
    "leadGenFormResponse",
    "associatedEntity",
    "sponsoredCreative",
    "occuredAt",
];

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
    fn arbitrary_json_never_panics(value in adpipe_plugin_sdk::testing::arbitrary_json(KEYS)) {
        let ctx = ParseContext { account_id: Some("1".into()), ..Default::default() };
        for body in [serde_json::json!({"elements": [value.clone()]}), value.clone()] {
            let bytes = serde_json::to_vec(&body).expect("encode");
            for result in [parse_report(&bytes, &ctx), parse_webhook(&bytes, &ctx)] {
                if let Err(e) = result {
                    prop_assert!(!e.message.is_empty());
                }
            }
        }
    }
}
