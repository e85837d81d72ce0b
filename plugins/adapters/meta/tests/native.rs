//! The Meta adapter on recorded-shape Graph API payloads (`tests/fixtures/`),
//! natively: exact values, levels, paging, restatements, errors.

use std::collections::BTreeMap;

use adpipe_plugin_meta::{parse_report, parse_webhook};
use adpipe_plugin_sdk::{CredentialSlot, ErrorKind, ParseContext, RowBatch, RowKind};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn report(name: &str) -> RowBatch {
    parse_report(&fixture(name), &ParseContext::default()).expect("fixture parses")
}

/// (impressions, clicks, spend, conversions, conversion value) per (campaign, date).
type Totals = BTreeMap<(String, String), (u64, u64, i64, i64, i64)>;

fn totals(batches: &[RowBatch]) -> Totals {
    let mut out = Totals::new();
    for b in batches {
        for r in &b.rows {
            let key = (
                b.str(r.campaign_id.expect("campaign")).to_owned(),
                r.date.to_string(),
            );
            let t = out.entry(key).or_default();
            t.0 += r.impressions;
            t.1 += r.clicks;
            t.2 += r.spend_micros;
            t.3 += r.conversions_micros;
            t.4 += r.conversion_value_micros;
        }
    }
    out
}

#[test]
fn two_ad_level_pages_total_exactly() {
    let (p1, p2) = (
        report("insights_ad_page1.json"),
        report("insights_ad_page2.json"),
    );
    assert_eq!((p1.rows.len(), p2.rows.len()), (6, 4));
    let c1 = "120210000000001".to_owned();
    let c2 = "120210000000002".to_owned();
    let d1 = "2026-11-01".to_owned();
    let d2 = "2026-11-02".to_owned();
    let expected: Totals = [
        (
            (c1.clone(), d1.clone()),
            (24_770, 521, 353_490_000, 11_000_000, 880_490_000),
        ),
        (
            (c1, d2.clone()),
            (24_440, 506, 344_340_000, 9_000_000, 650_250_000),
        ),
        (
            (c2.clone(), d1),
            (8_000, 253, 123_500_000, 5_000_000, 410_000_000),
        ),
        ((c2, d2), (7_420, 228, 117_040_000, 3_000_000, 240_000_000)),
    ]
    .into_iter()
    .collect();
    assert_eq!(totals(&[p1.clone(), p2.clone()]), expected);

    // Every row is an ad-level snapshot in USD with the account from the payload.
    for b in [&p1, &p2] {
        for r in &b.rows {
            assert_eq!(r.kind, RowKind::Snapshot);
            assert!(r.ad_id.is_some() && r.ad_group_id.is_some());
            assert_eq!(b.str(r.currency.expect("currency")), "USD");
            assert_eq!(b.str(r.account_id.expect("account")), "1234567890");
            assert_eq!(r.observed_at_ms, None, "the host stamps observation time");
        }
    }
    assert_eq!(b_name(&p1, 0), Some("Prospecting – Broad US"));

    // Page 1 links to page 2 without leaking the access token; page 2 ends.
    let next = p1.next_page.as_ref().expect("next page");
    assert!(next
        .url
        .starts_with("https://graph.facebook.com/v21.0/act_1234567890/insights?"));
    assert!(!next.url.contains("access_token") && next.url.contains("after=NQZDZD"));
    assert_eq!(
        next.credential,
        CredentialSlot::Query("access_token".into())
    );
    assert!(p2.next_page.is_none());

    // Extras: link clicks and lead actions of the first page.
    let sum = |b: &RowBatch, name: &str| -> i64 {
        b.extras
            .iter()
            .filter(|e| b.str(e.name) == name)
            .map(|e| e.value_micros)
            .sum()
    };
    assert_eq!(
        sum(&p1, "actions_link_click"),
        (280 + 131 + 270 + 190) * 1_000_000
    );
    assert_eq!(sum(&p1, "actions_lead"), 4_000_000);
    assert_eq!(sum(&p1, "actions_video_view"), 2_210_000_000);
    assert_eq!(sum(&p1, "actions_post_engagement"), 402_000_000);
}

fn b_name(b: &RowBatch, row: usize) -> Option<&str> {
    b.rows[row].campaign_name.map(|n| b.str(n))
}

#[test]
fn campaign_level_rows_name_no_ad() {
    let b = report("insights_campaign.json");
    assert_eq!(b.rows.len(), 3);
    assert!(b
        .rows
        .iter()
        .all(|r| r.ad_id.is_none() && r.ad_group_id.is_none()));
    // 10 pixel purchases are inside the 11 purchases.
    assert_eq!(b.rows[0].conversions_micros, 11_000_000);
    assert_eq!(b.rows[0].conversion_value_micros, 880_490_000);
}

#[test]
fn zero_rows_with_missing_fields_are_zero() {
    let b = report("insights_zero_rows.json");
    let got: Vec<_> = b
        .rows
        .iter()
        .map(|r| {
            (
                r.impressions,
                r.clicks,
                r.spend_micros,
                r.conversions_micros,
            )
        })
        .collect();
    assert_eq!(got, vec![(0, 0, 0, 0), (37, 0, 410_000, 0), (0, 0, 0, 0)]);
    assert!(b.extras.is_empty());
}

#[test]
fn a_restated_day_carries_the_new_figures() {
    let b = report("insights_restated.json");
    let r = &b.rows[0];
    assert_eq!(r.date.to_string(), "2026-11-01");
    assert_eq!(b.str(r.ad_id.expect("ad")), "23851000000111");
    assert_eq!(
        (r.impressions, r.clicks, r.spend_micros),
        (12_600, 315, 218_020_000)
    );
    assert_eq!(
        (r.conversions_micros, r.conversion_value_micros),
        (9_000_000, 700_500_000)
    );
}

#[test]
fn the_error_envelope_is_a_platform_error() {
    let e = parse_report(&fixture("insights_error.json"), &ParseContext::default())
        .expect_err("error body");
    assert_eq!(e.kind, ErrorKind::PlatformError);
    assert_eq!(
        e.message,
        "Meta API error 17 (OAuthException): (#17) User request limit reached"
    );
}

#[test]
fn leadgen_deliveries_become_deduplicable_deltas() {
    let b = parse_webhook(&fixture("webhook_leadgen.json"), &ParseContext::default())
        .expect("delivery parses");
    // Four leadgen changes: one is a redelivery (same leadgen_id: the host dedups), one is organic.
    assert_eq!(b.rows.len(), 3);
    let keys: Vec<_> = b
        .rows
        .iter()
        .map(|r| b.str(r.dedup_key.expect("key")))
        .collect();
    assert_eq!(
        keys,
        [
            "leadgen:1950123456789012",
            "leadgen:1950123456789013",
            "leadgen:1950123456789012"
        ]
    );
    assert!(b
        .rows
        .iter()
        .all(|r| r.kind == RowKind::Delta && r.campaign_id.is_none()));
    assert!(
        b.rows.iter().all(|r| r.ad_group_id.is_none()),
        "adgroup_id is Meta's legacy name of the ad, never an ad set"
    );
    assert!(b.rows.iter().all(|r| r.date.to_string() == "2026-11-01"));
    assert_eq!(b.extras.len(), 3);
    assert!(b
        .extras
        .iter()
        .all(|e| b.str(e.name) == "leads" && e.value_micros == 1_000_000));
    assert_eq!(b.notices.len(), 2, "{:?}", b.notices);
    assert!(b.notices.iter().any(|n| n.contains("organic")));
    assert!(b.notices.iter().any(|n| n.contains("\"feed\"")));
}

#[test]
fn a_leads_adgroup_id_is_its_ad_not_an_ad_set() {
    // In Meta's legacy naming an "adgroup" is an ad: real deliveries carry
    // adgroup_id equal to ad_id. The lead is attached to its ad (ad_id, else
    // adgroup_id); its ad set and campaign come from reports, never from here.
    let b = parse_webhook(
        &fixture("webhook_leadgen_adgroup.json"),
        &ParseContext::default(),
    )
    .expect("delivery parses");
    assert_eq!(b.rows.len(), 2);
    let ads: Vec<_> = b.rows.iter().map(|r| b.str(r.ad_id.expect("ad"))).collect();
    assert_eq!(ads, ["23851000000311", "23851000000312"]);
    assert!(b.rows.iter().all(|r| r.ad_group_id.is_none()));
    assert!(b.notices.is_empty(), "{:?}", b.notices);
}

#[test]
fn a_row_without_campaign_names_its_level() {
    let ctx = ParseContext {
        account_id: Some("act_1".into()),
        currency: Some("USD".into()),
        ..Default::default()
    };
    let ad = br#"{"data":[{"account_id":"1","adset_id":"5","ad_id":"6","date_start":"2026-11-01","date_stop":"2026-11-01"}]}"#;
    let e = parse_report(ad, &ctx).expect_err("no campaign");
    assert_eq!(
        (e.kind, e.path.as_str()),
        (ErrorKind::InvalidShape, "/data/0/campaign_id")
    );
    assert!(
        e.message.contains("ad-level") && e.message.contains("campaign_id"),
        "{e}"
    );
    assert!(!e.message.contains("account-level"), "{e}");
    let adset = br#"{"data":[{"account_id":"1","adset_id":"5","date_start":"2026-11-01"}]}"#;
    let e = parse_report(adset, &ctx).expect_err("no campaign");
    assert!(e.message.contains("ad-set-level"), "{e}");
    let account = br#"{"data":[{"account_id":"1","date_start":"2026-11-01"}]}"#;
    let e = parse_report(account, &ctx).expect_err("no campaign");
    assert!(e.message.contains("account-level"), "{e}");
}
