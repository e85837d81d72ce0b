//! Arbitrary bytes and JSON never panic the parser or the pull chain; rejections say what is wrong.

use adpipe_plugin_pinterest::parse_report;
use adpipe_plugin_sdk::ParseContext;
use proptest::prelude::*;

const KEYS: &[&str] = &[
    "code",
    "message",
    "items",
    "bookmark",
    "id",
    "DATE",
    "AD_ACCOUNT_ID",
    "ADVERTISER_ID",
    "CAMPAIGN_ID",
    "CAMPAIGN_NAME",
    "AD_GROUP_ID",
    "AD_ID",
    "SPEND_IN_MICRO_DOLLAR",
    "SPEND_IN_DOLLAR",
    "IMPRESSION_1",
    "CLICKTHROUGH_1",
    "TOTAL_CONVERSIONS",
    "TOTAL_CHECKOUT_VALUE_IN_MICRO_DOLLAR",
    "OUTBOUND_CLICK_1",
    "REPIN_1",
];

fn contexts() -> Vec<ParseContext> {
    let base = ParseContext {
        account_id: Some("549755885175".into()),
        currency: Some("USD".into()),
        ..Default::default()
    };
    let with_url = |url: &str| {
        let mut c = base.clone();
        c.options.push(("request.url".into(), url.into()));
        c
    };
    vec![
        ParseContext::default(),
        base.clone(),
        with_url("https://api.pinterest.com/v5/ad_accounts/549755885175/campaigns?page_size=250#start_date=2026-11-01&end_date=2026-11-14"),
        with_url("https://api.pinterest.com/v5/ad_accounts/549755885175/ads/analytics?start_date=2026-11-01&end_date=2026-11-14&granularity=DAY#bookmark=x%2B"),
        with_url("not a url"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for ctx in contexts() {
            if let Err(e) = parse_report(&bytes, &ctx) {
                prop_assert!(!e.message.is_empty());
            }
        }
    }

    #[test]
    fn arbitrary_json_never_panics(value in adpipe_plugin_sdk::testing::arbitrary_json(KEYS)) {
        let bodies = [
            serde_json::json!([value.clone()]),
            serde_json::json!({"items": [value.clone()], "bookmark": "b"}),
            value.clone(),
        ];
        for body in bodies {
            let bytes = serde_json::to_vec(&body).expect("encode");
            for ctx in contexts() {
                if let Err(e) = parse_report(&bytes, &ctx) {
                    prop_assert!(!e.message.is_empty());
                }
            }
        }
    }
}
