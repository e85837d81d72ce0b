//! Exactly-once in effect: random snapshots (with restatements) and deltas,
//! delivered with random duplication, reordering and batching into the real
//! embedded store, roll up to exactly what an oracle computes.

use std::collections::{BTreeMap, HashMap};

use adpipe::insights::{rollup, Dimension, Granularity, Rollup};
use adpipe::row::{Row, RowEnvelope, RowKind};
use adpipe::store::sqlite::EmbeddedStore;
use adpipe::store::{FactFilter, Store};
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn totals_equal_latest_snapshots_plus_distinct_deltas(
        (observations, deltas, duplicates, batch_sizes, seed) in scenario()
    ) {
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
        for o in &observations {
            latest.insert((o.campaign, o.day), o); // later in the list = newer observed_at
        }
        let mut expected: BTreeMap<String, (i64, i64, i64)> = BTreeMap::new();
        for ((campaign, _), o) in &latest {
            let e = expected.entry(format!("c{campaign}")).or_default();
            e.0 += o.impressions;
            e.1 += o.spend_micros;
        }
        for (campaign, _, leads) in &deltas {
            expected.entry(format!("c{campaign}")).or_default().2 += leads;
        }
        // Delivery: all events plus duplicates, shuffled, in random batches.
        let mut delivery: Vec<Row> = events.clone();
        for d in &duplicates {
            delivery.push(events[d % events.len()].clone());
        }
        let mut state = seed | 1;
        for i in (1..delivery.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            delivery.swap(i, (state % (i as u64 + 1)) as usize);
        }

        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let rows = rt.block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::with_backend(EmbeddedStore::open(&dir.path().join("store.db")).await.expect("store")).await.expect("store");
            let mut offset = 0u64;
            let mut rest = delivery.as_slice();
            let mut sizes = batch_sizes.iter().cycle();
            while !rest.is_empty() {
                let n = (*sizes.next().unwrap_or(&1) as usize).min(rest.len());
                let (batch, tail) = rest.split_at(n);
                rest = tail;
                // Several records per transaction, as the consumer applies them.
                let records: Vec<RowEnvelope> = batch
                    .iter()
                    .map(|r| RowEnvelope { tenant: "t".into(), pipeline: "p".into(), rows: vec![r.clone()] })
                    .collect();
                offset += records.len() as u64;
                store.apply(&records.iter().collect::<Vec<_>>(), Some(offset)).await.expect("apply");
            }
            assert_eq!(store.applied_position(), offset);
            let filter = FactFilter::default();
            let days = adpipe::store::Days { from: 20_000, to: 20_010 };
            let snapshots = store.snapshots("t", days, &filter).await.expect("snapshots");
            let deltas = store.deltas("t", days, &filter).await.expect("deltas");
            let other_tenant = store.snapshots("u", days, &filter).await.expect("snapshots");
            assert!(other_tenant.is_empty());
            rollup(&snapshots, &deltas, &Rollup {
                granularity: Granularity::Total,
                group_by: vec![Dimension::CampaignId],
                metrics: vec!["impressions".into(), "spend".into(), "leads".into()],
            })
        });
        let actual: BTreeMap<String, (i64, i64, i64)> = rows
            .iter()
            .map(|r| {
                let spend = (r["spend"].as_f64().unwrap_or(-1.0) * 1_000_000.0).round() as i64;
                (
                    r["campaign_id"].as_str().unwrap_or("").to_owned(),
                    (r["impressions"].as_i64().unwrap_or(-1), spend, r["leads"].as_i64().unwrap_or(-1)),
                )
            })
            .collect();
        prop_assert_eq!(actual, expected);
    }
}
