//! Property-test strategies shared by the plugin crates' fuzz tests:
//! arbitrary JSON biased towards a platform's own field names, so generated
//! documents reach deep into the parsers.

use proptest::prelude::*;
use serde_json::{json, Value};

/// Arbitrary JSON whose object keys are mostly drawn from `keys`.
pub fn arbitrary_json(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
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
            Just("2026-11-01 13:00:00"),
            Just("12.34"),
            Just("-1"),
            Just("1e400"),
            Just("urn:li:sponsoredCampaign:1"),
        ]
        .prop_map(|s| json!(s)),
    ];
    let key = prop_oneof![
        4 => prop::sample::select(keys).prop_map(str::to_owned),
        1 => "[a-z]{1,6}",
    ];
    leaf.prop_recursive(5, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
