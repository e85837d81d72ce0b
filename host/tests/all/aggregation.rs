//! Exactly-once in effect: random snapshots (with restatements) and deltas,
//! delivered with random duplication, reordering and batching into the real
//! embedded store (and ClickHouse, when it runs), roll up to exactly what an
//! oracle computes: through the rollups at every granularity, and through
//! the facts.

use std::collections::{BTreeMap, HashMap};

use adpipe::insights::{Dimension, Granularity, Rollup};
use adpipe::row::{Row, RowEnvelope, RowKind};
use adpipe::store::sqlite::EmbeddedStore;
use adpipe::store::{Aggregate, FactFilter, Store};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Observation {
    campaign: u8,
    day: u8,
    impressions: i64,
    spend_micros: i64,
}

fn row(kind: RowKind, campaign: u8, day: u8) -> Row {
    Row {
        kind,
        platform: "meta".into(),
        account_id: "act".into(),
        campaign_id: Some(format!("c{campaign}")),
        campaign_name: None,
        ad_group_id: None,
        ad_id: None,
        ad_group_name: None,
        ad_name: None,
        breakdown: None,
        date: 20_000 + i32::from(day),
        hour: None,
        currency: Some("USD".into()),
        impressions: 0,
        clicks: 0,
        spend_micros: 0,
        conversions_micros: 0,
        conversion_value_micros: 0,
        extras: BTreeMap::new(),
        observed_at_us: 0,
        dedup_key: None,
        adapter: "meta".into(),
        adapter_version: "test".into(),
    }
}

/// Snapshot observations, deltas (campaign, day, leads), duplicate picks, batch sizes, shuffle seed.
type Scenario = (
    Vec<Observation>,
    Vec<(u8, u8, i64)>,
    Vec<usize>,
    Vec<u8>,
    u64,
);

fn scenario() -> impl Strategy<Value = Scenario> {
    let observation = (0u8..3, 0u8..4, 0i64..10_000, 0i64..50_000_000).prop_map(
        |(campaign, day, impressions, spend_micros)| Observation {
            campaign,
            day,
            impressions,
            spend_micros,
        },
    );
    (
        prop::collection::vec(observation, 1..40),
        // Deltas: (campaign, day, leads) per distinct dedup key.
        prop::collection::vec((0u8..3, 0u8..4, 1i64..5), 0..15),
        // Extra deliveries (duplicates), as indices into all events.
        prop::collection::vec(any::<usize>(), 0..30),
        // Batch sizes.
        prop::collection::vec(1u8..8, 1..20),
        any::<u64>(),
    )
}

/// Per campaign: impressions, spend (micros), leads.
type Totals = BTreeMap<String, (i64, i64, i64)>;

/// Deliver `delivery` to `store` in batches of `batch_sizes`, then answer
/// per campaign: from the store's SQL sums at every granularity (summed over
/// buckets), and from the in-memory reference over its facts.
async fn deliver_and_answer(
    store: &Store,
    delivery: &[Row],
    batch_sizes: &[u8],
) -> Vec<(String, Totals)> {
    let mut offset = 0u64;
    let mut rest = delivery;
    let mut sizes = batch_sizes.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&1) as usize).min(rest.len());
        let (batch, tail) = rest.split_at(n);
        rest = tail;
        // Several records per transaction, as the consumer applies them.
        let records: Vec<RowEnvelope> = batch
            .iter()
            .map(|r| RowEnvelope {
                tenant: "t".into(),
                pipeline: "p".into(),
                rows: vec![r.clone()],
            })
            .collect();
        offset += records.len() as u64;
        store
            .apply(&records.iter().collect::<Vec<_>>(), Some(offset))
            .await
            .expect("apply");
    }
    assert_eq!(store.applied_position(), offset);
    let filter = FactFilter::default();
    let days = adpipe::store::Days {
        from: 20_000,
        to: 20_010,
    };
    let deltas = store.deltas("t", days, &filter).await.expect("deltas");
    let other_tenant = store
        .snapshots("u", days, &filter)
        .await
        .expect("snapshots");
    assert!(other_tenant.is_empty());
    let group_by = vec![Dimension::CampaignId];
    let extras = vec!["leads".to_owned()];
    let totals = |groups: Vec<adpipe::insights::Group>| -> Totals {
        let mut totals = Totals::new();
        for g in groups {
            let campaign = g.keys["campaign_id"].as_str().unwrap_or("").to_owned();
            let t = totals.entry(campaign).or_default();
            t.0 += g.sums.impressions;
            t.1 += g.sums.spend;
            t.2 += g.sums.extras.get("leads").copied().unwrap_or(0) / 1_000_000;
        }
        totals
    };
    let mut answers = vec![];
    for granularity in [
        Granularity::Day,
        Granularity::Week,
        Granularity::Month,
        Granularity::Total,
    ] {
        let spec = Rollup {
            granularity,
            group_by: group_by.clone(),
            metrics: vec![],
        };
        let summed = store
            .aggregate(
                "t",
                &Aggregate {
                    days,
                    filter: &filter,
                    granularity,
                    group_by: &group_by,
                    extras: &extras,
                },
            )
            .await
            .expect("aggregate");
        answers.push((
            format!("rollups by {granularity:?}"),
            totals(adpipe::insights::groups(summed, &deltas, &spec)),
        ));
    }
    let snapshots = store
        .snapshots("t", days, &filter)
        .await
        .expect("snapshots");
    let spec = Rollup {
        granularity: Granularity::Total,
        group_by,
        metrics: vec![],
    };
    answers.push((
        "facts".into(),
        totals(adpipe::insights::rollup_groups(&snapshots, &deltas, &spec)),
    ));
    answers
}

/// The delivery of a scenario (every event, duplicates, shuffled) and the
/// oracle's totals.
fn plan(
    observations: &[Observation],
    deltas: &[(u8, u8, i64)],
    duplicates: &[usize],
    seed: u64,
) -> (Vec<Row>, Totals) {
    // Every event as the bus would carry it; observed_at = position in time.
    let mut events: Vec<Row> = Vec::new();
    for (i, o) in observations.iter().enumerate() {
        let mut r = row(RowKind::Snapshot, o.campaign, o.day);
        r.impressions = o.impressions;
        r.spend_micros = o.spend_micros;
        r.observed_at_us = 1_000 + i as i64;
        events.push(r);
    }
    for (k, (campaign, day, leads)) in deltas.iter().enumerate() {
        let mut r = row(RowKind::Delta, *campaign, *day);
        r.dedup_key = Some(format!("lead-{k}"));
        r.extras.insert("leads".into(), leads * 1_000_000);
        events.push(r);
    }
    // Oracle.
    let mut latest: HashMap<(u8, u8), &Observation> = HashMap::new();
    for o in observations {
        latest.insert((o.campaign, o.day), o); // later in the list = newer observed_at
    }
    let mut expected: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
    for ((campaign, _), o) in &latest {
        let e = expected.entry(format!("c{campaign}")).or_default();
        e.0 += o.impressions;
        e.1 += o.spend_micros;
    }
    for (campaign, _, leads) in deltas {
        expected.entry(format!("c{campaign}")).or_default().2 += leads;
    }
    // Delivery: all events plus duplicates, shuffled, in random batches.
    let mut delivery: Vec<Row> = events.clone();
    for d in duplicates {
        delivery.push(events[d % events.len()].clone());
    }
    let mut state = seed | 1;
    for i in (1..delivery.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        delivery.swap(i, (state % (i as u64 + 1)) as usize);
    }

    (delivery, expected)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn totals_equal_latest_snapshots_plus_distinct_deltas(
        (observations, deltas, duplicates, batch_sizes, seed) in scenario()
    ) {
        let (delivery, expected) = plan(&observations, &deltas, &duplicates, seed);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let answers = rt.block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::with_backend(EmbeddedStore::open(&dir.path().join("store.db")).await.expect("store")).await.expect("store");
            deliver_and_answer(&store, &delivery, &batch_sizes).await
        });
        for (what, actual) in answers {
            prop_assert_eq!(&actual, &expected, "{}", what);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// The same on ClickHouse (cancel and insert rollup rows, replays): each
    /// case in a database of its own.
    #[test]
    fn clickhouse_totals_equal_latest_snapshots_plus_distinct_deltas(
        (observations, deltas, duplicates, batch_sizes, seed) in scenario()
    ) {
        if !crate::common::engines_available(&[crate::common::Engine::ClickHouse]) {
            return Ok(());
        }
        let (delivery, expected) = plan(&observations, &deltas, &duplicates, seed);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let answers = rt.block_on(async {
            let database = format!("adpipe_prop_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
            let url = crate::common::Engine::ClickHouse.url();
            let backend = adpipe::store::clickhouse::ClickHouseStore::open(&url, Some(&database))
                .await
                .expect("ClickHouse");
            let store = Store::with_backend(backend).await.expect("store");
            let answers = deliver_and_answer(&store, &delivery, &batch_sizes).await;
            let _ = reqwest::Client::new()
                .post(format!("{url}/"))
                .body(format!("DROP DATABASE IF EXISTS {database}"))
                .send()
                .await;
            answers
        });
        for (what, actual) in answers {
            prop_assert_eq!(&actual, &expected, "{}", what);
        }
    }
}
