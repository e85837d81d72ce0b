//! The TikTok adapter on recorded-shape report/integrated/get payloads (`tests/fixtures/`).

use adpipe_plugin_sdk::{ErrorKind, ParseContext, RowBatch};
use adpipe_plugin_tiktok::{parse_report, parse_webhook};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn ctx() -> ParseContext {
    ParseContext {
        account_id: Some("7012345678901234567".into()),
        ..Default::default()
    }
}

fn parse(name: &str) -> RowBatch {
    parse_report(&fixture(name), &ctx()).expect("fixture parses")
}

#[test]
fn ad_level_pages_total_exactly() {
    let (p1, p2) = (parse("report_ad_page1.json"), parse("report_ad_page2.json"));
    assert_eq!((p1.rows.len(), p2.rows.len()), (3, 3));
    let c1: Vec<_> = p1
        .rows
        .iter()
        .filter(|r| p1.str(r.campaign_id.expect("c")) == "1780000000000001")
        .collect();
    let spend: i64 = c1.iter().map(|r| r.spend_micros).sum();
    let impressions: u64 = c1.iter().map(|r| r.impressions).sum();
    let value: i64 = c1.iter().map(|r| r.conversion_value_micros).sum();
    assert_eq!(
        (spend, impressions, value),
        (184_650_000, 68_325, 1_370_200_000)
    );
    assert!(p1
        .rows
        .iter()
        .all(|r| r.ad_id.is_some() && r.ad_group_id.is_some()));
    assert!(p1
        .rows
        .iter()
        .all(|r| p1.str(r.currency.expect("currency")) == "USD"));
    assert_eq!(
        p1.str(p1.rows[2].campaign_name.expect("name")),
        "Creators – Spark Ads"
    );
    assert!(
        p1.notices[0].contains("page 1 of 2"),
        "a pushed page says more follow"
    );
    let zero = &p2.rows[2];
    assert_eq!(
        (zero.impressions, zero.spend_micros, zero.conversions_micros),
        (0, 0, 0)
    );
}

#[test]
fn hourly_restated_and_errors() {
    let h = parse("report_campaign_hourly.json");
    assert_eq!(
        h.rows.iter().map(|r| r.hour).collect::<Vec<_>>(),
        vec![Some(9), Some(10)]
    );
    assert!(h.rows.iter().all(|r| r.ad_id.is_none()));
    let r = parse("report_restated.json");
    assert_eq!(
        (r.rows[0].spend_micros, r.rows[0].conversions_micros),
        (121_050_000, 15_000_000)
    );
    for (name, code) in [
        ("report_rate_limited.json", "40100"),
        ("report_bad_token.json", "40105"),
    ] {
        let e = parse_report(&fixture(name), &ctx()).expect_err("platform error");
        assert_eq!(e.kind, ErrorKind::PlatformError);
        assert!(e.message.contains(code), "{e}");
    }
}

#[test]
fn lead_events_become_deltas() {
    let b =
        parse_webhook(&fixture("webhook_leads.json"), &ParseContext::default()).expect("parses");
    assert_eq!(b.rows.len(), 2);
    assert_eq!(
        b.str(b.rows[0].dedup_key.expect("key")),
        "lead:7300000000000000001"
    );
    assert_eq!(
        b.str(b.rows[0].campaign_id.expect("campaign")),
        "1780000000000002"
    );
    assert_eq!(b.rows[0].date.to_string(), "2026-11-01");
    assert_eq!(b.notices.len(), 1);
}
