//! Arbitrary bytes and arbitrary JSON never panic the parsers; every
//! rejection is typed and says what is wrong.

use adpipe_plugin_meta::{parse_report, parse_webhook};
use adpipe_plugin_sdk::ParseContext;
use proptest::prelude::*;
use serde_json::{json, Value};

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-z0-9_.,:+ -]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("2026-11-01"),
            Just("12.34"),
            Just("purchase"),
            Just("-1"),
            Just("1e400")
        ]
        .prop_map(|s| json!(s)),
    ];
    let keys = prop_oneof![
        Just("data".to_owned()),
        Just("paging".to_owned()),
        Just("next".to_owned()),
        Just("entry".to_owned()),
        Just("changes".to_owned()),
        Just("field".to_owned()),
        Just("value".to_owned()),
        Just("leadgen_id".to_owned()),
        Just("ad_id".to_owned()),
        Just("account_id".to_owned()),
        Just("campaign_id".to_owned()),
        Just("date_start".to_owned()),
        Just("date_stop".to_owned()),
        Just("spend".to_owned()),
        Just("impressions".to_owned()),
        Just("actions".to_owned()),
        Just("action_type".to_owned()),
        Just("created_time".to_owned()),
        Just("error".to_owned()),
        "[a-z]{1,6}",
    ];
    leaf.prop_recursive(5, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
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
