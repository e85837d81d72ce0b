//! Rollups answer exactly like the facts: every grouping and granularity
//! summed by each store's SQL (campaign-day rollups, or the facts for ad
//! groups and ads) equals the in-memory reference over the same stored facts,
//! with campaign and ad reports of the same days, hourly rows, breakdowns,
//! extra metrics, two currencies, restatements (one moving a row to another
//! currency), stale observations and redelivered batches; and a few answers
//! equal sums worked out by hand.

use std::collections::BTreeMap;

use adpipe::insights::{self, Dimension, Granularity, Rollup};
use adpipe::row::{Row, RowEnvelope, RowKind};
use adpipe::store::clickhouse::ClickHouseStore;
use adpipe::store::sqlite::EmbeddedStore;
use adpipe::store::{Aggregate, Days, FactFilter, Store};

use crate::common::{engines_available, Engine};

const DAY: i32 = 20_400; // 2025-11-08, a Saturday

struct Spec<'a> {
    campaign: &'a str,
    ad_group: Option<&'a str>,
    ad: Option<&'a str>,
    day: i32,
    hour: Option<u8>,
    breakdown: Option<&'a str>,
    currency: &'a str,
    impressions: i64,
    spend_micros: i64,
    purchases: i64,
    observed_at: i64,
}

fn snapshot(s: Spec<'_>) -> Row {
    let mut extras = BTreeMap::new();
    if s.purchases != 0 {
        extras.insert("actions_purchase".to_owned(), s.purchases * 1_000_000);
    }
    Row {
        kind: RowKind::Snapshot,
        platform: "meta".into(),
        account_id: "act_1".into(),
        campaign_id: Some(s.campaign.into()),
        campaign_name: None,
        ad_group_id: s.ad_group.map(Into::into),
        ad_id: s.ad.map(Into::into),
        ad_group_name: None,
        ad_name: None,
        breakdown: s.breakdown.map(Into::into),
        date: DAY + s.day,
        hour: s.hour,
        currency: Some(s.currency.into()),
        impressions: s.impressions,
        clicks: s.impressions / 10,
        spend_micros: s.spend_micros,
        conversions_micros: s.purchases * 1_000_000,
        conversion_value_micros: s.purchases * 7_500_000,
        extras,
        observed_at_us: s.observed_at,
        dedup_key: None,
        adapter: "meta".into(),
        adapter_version: "test".into(),
    }
}

fn base(campaign: &str, day: i32, impressions: i64, observed_at: i64) -> Spec<'_> {
    Spec {
        campaign,
        ad_group: None,
        ad: None,
        day,
        hour: None,
        breakdown: None,
        currency: "USD",
        impressions,
        spend_micros: impressions * 1_000,
        purchases: impressions / 100,
        observed_at,
    }
}

/// The rows, in delivery batches (the last batches restate, repeat and
/// carry stale observations).
fn batches() -> Vec<Vec<Row>> {
    let ad = |campaign, group, ad, day, impressions, observed_at| Spec {
        ad_group: Some(group),
        ad: Some(ad),
        ..base(campaign, day, impressions, observed_at)
    };
    let first = vec![
        // c1: a campaign report on days 0-1, an ad report on days 0-2.
        snapshot(base("c1", 0, 1000, 1)),
        snapshot(base("c1", 1, 1100, 1)),
        snapshot(ad("c1", "g1", "a1", 0, 600, 1)),
        snapshot(ad("c1", "g1", "a2", 0, 350, 1)),
        snapshot(ad("c1", "g1", "a1", 1, 700, 1)),
        snapshot(ad("c1", "g2", "a3", 2, 420, 1)),
        snapshot(ad("c1", "g2", "a3", 9, 90, 1)),
        // c2: ads, daily on day 0 and hourly on days 0 and 3.
        snapshot(ad("c2", "g3", "a4", 0, 2000, 1)),
        snapshot(Spec {
            hour: Some(5),
            ..ad("c2", "g3", "a4", 0, 123, 1)
        }),
        snapshot(Spec {
            hour: Some(5),
            ..ad("c2", "g3", "a4", 3, 300, 1)
        }),
        snapshot(Spec {
            hour: Some(6),
            ..ad("c2", "g3", "a4", 3, 200, 1)
        }),
    ];
    let second = vec![
        // c3 (EUR): an age breakdown every day, the unbroken report on day 4.
        snapshot(Spec {
            breakdown: Some("age=18-24"),
            currency: "EUR",
            ..base("c3", 4, 70, 1)
        }),
        snapshot(Spec {
            breakdown: Some("age=25-34"),
            currency: "EUR",
            ..base("c3", 4, 30, 1)
        }),
        snapshot(Spec {
            currency: "EUR",
            ..base("c3", 4, 111, 1)
        }),
        snapshot(Spec {
            breakdown: Some("age=18-24"),
            currency: "EUR",
            ..base("c3", 5, 40, 1)
        }),
        snapshot(Spec {
            breakdown: Some("gender=female"),
            currency: "EUR",
            ..base("c3", 5, 44, 1)
        }),
        // c4 starts in USD.
        snapshot(base("c4", 31, 500, 1)),
    ];
    let restated = vec![
        // Newer: replace.
        snapshot(base("c1", 1, 1500, 5)),
        snapshot(ad("c1", "g1", "a2", 0, 400, 5)),
        // c4's account turned out to be EUR: the row moves currency.
        snapshot(Spec {
            currency: "EUR",
            ..base("c4", 31, 650, 6)
        }),
        // Stale: ignored.
        snapshot(base("c1", 0, 9_999, 0)),
        // A newer and an older observation of one identity in one batch.
        snapshot(ad("c2", "g3", "a4", 0, 2100, 7)),
        snapshot(ad("c2", "g3", "a4", 0, 2050, 6)),
    ];
    // The restatements again (a redelivered batch) and the first batch again.
    vec![first.clone(), second, restated.clone(), restated, first]
}

async fn fill(store: &Store, tenant: &str) {
    fill_batches(store, tenant, 0..usize::MAX).await;
}

/// Apply the batches numbered `range` of [`batches`].
async fn fill_batches(store: &Store, tenant: &str, range: std::ops::Range<usize>) {
    for (i, rows) in batches().into_iter().enumerate() {
        if !range.contains(&i) {
            continue;
        }
        let envelope = RowEnvelope {
            tenant: tenant.into(),
            pipeline: "p".into(),
            rows,
        };
        store
            .apply(&[&envelope], Some(i as u64 + 1))
            .await
            .expect("apply");
    }
}

/// Store answer (SQL) and reference answer (in memory over the stored facts)
/// of one query, as `(keys, sums)` rows.
async fn both_answers(
    store: &Store,
    tenant: &str,
    granularity: Granularity,
    group_by: &[Dimension],
    filter: &FactFilter,
) -> (Vec<String>, Vec<String>, Vec<insights::Group>) {
    let days = Days {
        from: DAY,
        to: DAY + 40,
    };
    let spec = Rollup {
        granularity,
        group_by: group_by.to_vec(),
        metrics: vec![],
    };
    let extras = vec!["actions_purchase".to_owned()];
    let summed = store
        .aggregate(
            tenant,
            &Aggregate {
                days,
                filter,
                granularity,
                group_by,
                extras: &extras,
            },
        )
        .await
        .expect("aggregate");
    let from_sql = insights::groups(summed, &[], &spec);
    let kept = from_sql.clone();
    let facts = store.snapshots(tenant, days, filter).await.expect("facts");
    let reference = insights::rollup_groups(&facts, &[], &spec);
    let show = |groups: Vec<insights::Group>| -> Vec<String> {
        groups
            .into_iter()
            .map(|g| {
                let mut extras: Vec<_> = g.sums.extras.into_iter().filter(|e| e.1 != 0).collect();
                extras.sort();
                format!(
                    "{:?} i={} c={} s={} cv={} v={} x={extras:?}",
                    g.keys,
                    g.sums.impressions,
                    g.sums.clicks,
                    g.sums.spend,
                    g.sums.conversions,
                    g.sums.conversion_value
                )
            })
            .collect()
    };
    (show(from_sql), show(reference), kept)
}

async fn rollups_equal_the_facts(store: Store, tenant: &str) {
    fill(&store, tenant).await;
    answers_equal_the_facts(&store, tenant).await;
}

/// Every grouping, granularity and filter answers like the facts, and the
/// per-campaign totals are the ones worked out by hand (all batches applied).
async fn answers_equal_the_facts(store: &Store, tenant: &str) {
    let store = store.clone();
    let groupings: &[&[Dimension]] = &[
        &[],
        &[Dimension::Platform],
        &[Dimension::AccountId],
        &[Dimension::CampaignId],
        &[Dimension::AdGroupId],
        &[Dimension::AdId],
        &[Dimension::CampaignId, Dimension::AdId],
    ];
    let filters = [
        FactFilter::default(),
        FactFilter {
            campaign_ids: Some(vec!["c1".into(), "c3".into()]),
            ..FactFilter::default()
        },
        FactFilter {
            currencies: Some(vec!["EUR".into()]),
            ..FactFilter::default()
        },
    ];
    let (mut compared, mut non_empty) = (0, 0);
    for granularity in [
        Granularity::Day,
        Granularity::Week,
        Granularity::Month,
        Granularity::Total,
    ] {
        for group_by in groupings {
            for filter in &filters {
                let (sql, reference, _) =
                    both_answers(&store, tenant, granularity, group_by, filter).await;
                non_empty += usize::from(!reference.is_empty());
                assert_eq!(
                    sql, reference,
                    "{granularity:?} by {group_by:?} with {filter:?}"
                );
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 4 * 7 * 3);
    // Only EUR by ad group or ad is empty (EUR campaigns report at campaign level).
    assert_eq!(non_empty, compared - 4 * 3);

    // Worked out by hand: totals per campaign (the coarsest report per day).
    let (_, _, groups) = both_answers(
        &store,
        tenant,
        Granularity::Total,
        &[Dimension::CampaignId],
        &FactFilter::default(),
    )
    .await;
    let impressions: Vec<(String, String, i64)> = groups
        .iter()
        .map(|g| {
            let text = |k: &str| g.keys[k].as_str().unwrap_or_default().to_owned();
            (text("campaign_id"), text("currency"), g.sums.impressions)
        })
        .collect();
    assert_eq!(
        impressions,
        vec![
            // c1: campaign rows 1000 + 1500 (restated), ad rows 420 + 90 on days 2 and 9.
            ("c1".into(), "USD".into(), 1000 + 1500 + 420 + 90),
            // c2: daily 2100 (newest) on day 0; hourly 300 + 200 on day 3.
            ("c2".into(), "USD".into(), 2100 + 300 + 200),
            // c3 (EUR): unbroken 111 on day 4; day 5: the age report (40) sorts before gender.
            ("c3".into(), "EUR".into(), 111 + 40),
            // c4: moved to EUR (nothing left in USD).
            ("c4".into(), "EUR".into(), 650),
        ]
    );
}

#[tokio::test]
async fn embedded_rollups_answer_like_the_facts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::with_backend(
        EmbeddedStore::open(&dir.path().join("store.db"))
            .await
            .expect("store"),
    )
    .await
    .expect("store");
    rollups_equal_the_facts(store, "t").await;
}

/// A store written before this adpipe kept rollups in the write path: facts
/// keyed by ad first, a per-campaign index, triggers adding each fact to the
/// rollups. Opening it rekeys the facts, drops the index and the triggers (a
/// trigger left behind would count every later fact twice), and the batches
/// after that leave every answer equal to the facts and to the hand sums.
#[tokio::test]
async fn a_store_whose_rollups_were_kept_by_triggers_is_rekeyed_and_stays_exact() {
    rekeyed_and_exact(
        "tenant, platform, account_id, campaign_id, ad_group_id, ad_id, date, hour, breakdown",
        true,
    )
    .await;
}

/// A store keyed by campaign, then day (the layout before facts were keyed
/// by day) is rekeyed by day when it opens and stays exact.
#[tokio::test]
async fn a_store_keyed_by_campaign_is_rekeyed_by_day_and_stays_exact() {
    rekeyed_and_exact(
        "tenant, campaign_id, platform, account_id, date, ad_group_id, ad_id, hour, breakdown",
        false,
    )
    .await;
}

/// Fill a store, take it back to a `facts` table keyed by `older_key` (with
/// the per-campaign index and the rollup trigger when `with_triggers`) and
/// no account-day sums, open it, and check the layout and every answer.
async fn rekeyed_and_exact(older_key: &str, with_triggers: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store.db");
    let open = || async {
        Store::with_backend(EmbeddedStore::open(&path).await.expect("store"))
            .await
            .expect("store")
    };
    fill_batches(&open().await, "t", 0..2).await;

    // Back to the older layout, as an adpipe before this one left it.
    let pool = adpipe::sqlite::open_file(&path).await.expect("pool");
    let columns = "tenant, platform, account_id, campaign_id, ad_group_id, ad_id, date, hour, \
        currency, impressions, clicks, spend, conversions, conversion_value, extras, observed_at, \
        pipeline, adapter, adapter_version, breakdown, report";
    let mut older = vec![
        format!(
            "CREATE TABLE facts_older (
            tenant TEXT NOT NULL, platform TEXT NOT NULL, account_id TEXT NOT NULL,
            campaign_id TEXT NOT NULL, ad_group_id TEXT NOT NULL, ad_id TEXT NOT NULL,
            date INTEGER NOT NULL, hour INTEGER NOT NULL, currency TEXT NOT NULL,
            impressions INTEGER NOT NULL, clicks INTEGER NOT NULL, spend INTEGER NOT NULL,
            conversions INTEGER NOT NULL, conversion_value INTEGER NOT NULL,
            extras TEXT, observed_at INTEGER NOT NULL,
            pipeline TEXT NOT NULL, adapter TEXT NOT NULL, adapter_version TEXT NOT NULL,
            breakdown TEXT NOT NULL DEFAULT '', report TEXT NOT NULL DEFAULT '',
            PRIMARY KEY ({older_key})
        ) WITHOUT ROWID"
        ),
        format!("INSERT INTO facts_older ({columns}) SELECT {columns} FROM facts"),
        "DROP TABLE facts".to_owned(),
        "ALTER TABLE facts_older RENAME TO facts".to_owned(),
        // Older stores had no account-day sums: opening computes them once.
        "DROP TABLE rollup_accounts".to_owned(),
    ];
    let triggers = [
        "CREATE INDEX facts_by_campaign ON facts (tenant, campaign_id, date)".to_owned(),
        // The older insert trigger's first statement: enough to double-count.
        "CREATE TRIGGER facts_roll_up_insert AFTER INSERT ON facts BEGIN
            INSERT INTO rollup_days (tenant, date, campaign_id, platform, account_id, report,
                currency, rows, impressions, clicks, spend, conversions, conversion_value)
            VALUES (NEW.tenant, NEW.date, NEW.campaign_id, NEW.platform, NEW.account_id,
                NEW.report, NEW.currency, 1, NEW.impressions, NEW.clicks, NEW.spend,
                NEW.conversions, NEW.conversion_value)
            ON CONFLICT (tenant, date, campaign_id, platform, account_id, report, currency)
            DO UPDATE SET rows = rows + excluded.rows,
                impressions = impressions + excluded.impressions;
         END"
        .to_owned(),
    ];
    if with_triggers {
        older.extend(triggers);
    }
    // One transaction: one connection sees its own schema changes.
    let mut tx = pool.begin().await.expect("begin");
    for statement in &older {
        sqlx::query(statement)
            .execute(&mut *tx)
            .await
            .expect(statement);
    }
    tx.commit().await.expect("commit");

    let store = open().await;
    let layout: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT type, name, COALESCE(sql, '') FROM sqlite_master
         WHERE tbl_name = 'facts' ORDER BY type, name",
    )
    .fetch_all(&pool)
    .await
    .expect("layout");
    assert_eq!(layout.len(), 1, "only the table is left: {layout:?}");
    assert!(
        layout[0].2.contains(
            "PRIMARY KEY (tenant, date, campaign_id, platform, account_id, ad_group_id, ad_id, hour, breakdown)"
        ),
        "facts are keyed by day and campaign: {}",
        layout[0].2
    );
    fill_batches(&store, "t", 2..usize::MAX).await;
    answers_equal_the_facts(&store, "t").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_rollups_answer_like_the_facts() {
    if !engines_available(&[Engine::ClickHouse]) {
        return;
    }
    let database = format!(
        "adpipe_rollups_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let store = Store::with_backend(
        ClickHouseStore::open(&Engine::ClickHouse.url(), Some(&database))
            .await
            .expect("ClickHouse (scripts/services.sh up)"),
    )
    .await
    .expect("store");
    rollups_equal_the_facts(store, "t").await;
}

/// A ClickHouse database whose rollups predate `adpipe_rollup_chosen` (no
/// table, no view, no marker) gets the chosen reports' sums computed from its
/// rollups when it opens, and stays exact as restatements and redelivered
/// batches keep coming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clickhouse_database_without_chosen_sums_gets_them_once() {
    if !engines_available(&[Engine::ClickHouse]) {
        return;
    }
    let database = format!(
        "adpipe_chosen_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let open = || async {
        Store::with_backend(
            ClickHouseStore::open(&Engine::ClickHouse.url(), Some(&database))
                .await
                .expect("ClickHouse (scripts/services.sh up)"),
        )
        .await
        .expect("store")
    };
    let store = open().await;
    fill_batches(&store, "t", 0..2).await;
    for statement in [
        "DROP TABLE adpipe_writes_chosen",
        "DROP TABLE adpipe_rollup_chosen",
        "DROP TABLE adpipe_rollup_chosen_filled",
    ] {
        let answer = reqwest::Client::new()
            .post(format!("{}/?database={database}", Engine::ClickHouse.url()))
            .body(statement)
            .send()
            .await
            .expect("ClickHouse");
        assert!(answer.status().is_success(), "{statement}");
    }
    let store = open().await;
    fill_batches(&store, "t", 2..usize::MAX).await;
    answers_equal_the_facts(&store, "t").await;
}

/// Two ClickHouse shards behind `Distributed` tables answer every query
/// exactly like one server, restatements, currency moves and redelivered
/// batches included, and each shard holds some of the campaigns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_clickhouse_answers_like_one_server() {
    use adpipe::store::clickhouse::Sharding;
    if !engines_available(&[Engine::ClickHouse, Engine::ClickHouseShards]) {
        return;
    }
    let database = format!(
        "adpipe_shards_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let shards: Vec<String> = Engine::ClickHouseShards
        .url()
        .split(',')
        .map(str::to_owned)
        .collect();
    let sharding = Sharding {
        cluster: "adpipe_shards".into(),
        shards: shards.clone(),
    };
    let sharded = Store::with_backend(
        ClickHouseStore::open_with(&shards[0], Some(&database), Some(&sharding))
            .await
            .expect("sharded ClickHouse (scripts/clickhouse-shards up)"),
    )
    .await
    .expect("store");
    let single = Store::with_backend(
        ClickHouseStore::open(&Engine::ClickHouse.url(), Some(&database))
            .await
            .expect("ClickHouse"),
    )
    .await
    .expect("store");
    fill(&single, "t").await;
    // Compared with the reference over the sharded store's own facts...
    rollups_equal_the_facts(sharded.clone(), "t").await;
    // ...and answer for answer with the single server.
    for granularity in [Granularity::Day, Granularity::Week, Granularity::Total] {
        for group_by in [&[][..], &[Dimension::CampaignId], &[Dimension::AdId]] {
            let filter = FactFilter::default();
            let (one, _, _) = both_answers(&single, "t", granularity, group_by, &filter).await;
            let (two, _, _) = both_answers(&sharded, "t", granularity, group_by, &filter).await;
            assert_eq!(one, two, "{granularity:?} by {group_by:?}");
        }
    }
    // The facts really are spread: each shard holds some campaigns, none twice.
    let mut per_shard = vec![];
    for shard in &shards {
        let body = reqwest::Client::new()
            .post(format!("{shard}/?database={database}"))
            .body("SELECT groupUniqArray(campaign_id) FROM adpipe_facts_local FORMAT JSONCompact")
            .send()
            .await
            .expect("shard")
            .text()
            .await
            .expect("body");
        let answer: serde_json::Value = serde_json::from_str(&body).expect("json");
        let mut campaigns: Vec<String> = answer["data"][0][0]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        campaigns.sort();
        per_shard.push(campaigns);
    }
    assert!(
        per_shard.iter().all(|c| !c.is_empty()),
        "both shards hold campaigns: {per_shard:?}"
    );
    let mut all: Vec<String> = per_shard.concat();
    all.sort();
    assert_eq!(all, vec!["c1", "c2", "c3", "c4"], "{per_shard:?}");
}
