//! The Google Ads adapter on recorded-shape API responses (`tests/fixtures/`).

use std::collections::BTreeMap;

use adpipe_plugin_google::parse_report;
use adpipe_plugin_sdk::{ErrorKind, ParseContext, RowBatch};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn parse(name: &str) -> RowBatch {
    parse_report(&fixture(name), &ParseContext::default()).expect("fixture parses")
}

/// (impressions, clicks, spend micros, conversions micros, value micros).
type Sums = (u64, u64, i64, i64, i64);

/// Sums per (campaign, date).
fn totals(b: &RowBatch) -> BTreeMap<(String, String), Sums> {
    let mut out = BTreeMap::new();
    for r in &b.rows {
        let t: &mut Sums = out
            .entry((
                b.str(r.campaign_id.expect("campaign")).to_owned(),
                r.date.to_string(),
            ))
            .or_default();
        t.0 += r.impressions;
        t.1 += r.clicks;
        t.2 += r.spend_micros;
        t.3 += r.conversions_micros;
        t.4 += r.conversion_value_micros;
    }
    out
}

#[test]
fn search_stream_batches_total_exactly() {
    let b = parse("searchstream_ad_group_ad.json");
    assert_eq!(b.rows.len(), 6);
    let t = totals(&b);
    let key = |c: &str, d: &str| (c.to_owned(), d.to_owned());
    assert_eq!(
        t[&key("20123456701", "2026-11-01")],
        (7_210, 508, 238_640_000, 35_500_000, 2_800_250_000)
    );
    assert_eq!(
        t[&key("20123456702", "2026-11-01")],
        (18_400, 233, 402_990_000, 12_333_333, 1_011_670_000)
    );
    assert_eq!(
        t[&key("20123456701", "2026-11-02")],
        (4_870, 388, 176_020_000, 29_000_000, 2_301_500_000)
    );
    // The zero-metric ad: absent fields are zeros.
    assert_eq!(
        t[&key("20123456702", "2026-11-02")],
        (17_960, 219, 389_100_000, 11_000_000, 904_000_000)
    );
    assert!(b
        .rows
        .iter()
        .all(|r| r.ad_id.is_some() && r.ad_group_id.is_some()));
    assert!(b
        .rows
        .iter()
        .all(|r| b.str(r.account_id.expect("account")) == "1234567890"));
    assert_eq!(
        b.str(b.rows[0].campaign_name.expect("name")),
        "Search – Brand"
    );
}

#[test]
fn search_pages_and_campaign_level() {
    let (p1, p2) = (
        parse("search_campaign_page1.json"),
        parse("search_campaign_page2.json"),
    );
    assert_eq!((p1.rows.len(), p2.rows.len()), (2, 1));
    assert!(p1
        .rows
        .iter()
        .all(|r| r.ad_group_id.is_none() && r.ad_id.is_none()));
    assert!(
        p1.notices.iter().any(|n| n.contains("CMDxqQEQARoKCAE")),
        "{:?}",
        p1.notices
    );
    assert!(p2.notices.is_empty());
    assert_eq!(p1.rows[0].spend_micros, 238_640_000);
}

#[test]
fn restated_hourly_empty_and_error() {
    let r = parse("searchstream_restated.json");
    assert_eq!(
        (r.rows[0].clicks, r.rows[0].conversions_micros),
        (415, 33_500_000)
    );
    let h = parse("searchstream_hourly.json");
    assert_eq!(
        h.rows.iter().map(|r| r.hour).collect::<Vec<_>>(),
        vec![Some(9), Some(10)]
    );
    assert_eq!(h.rows[1].conversions_micros, 0);
    assert!(parse("searchstream_empty.json").rows.is_empty());
    let e = parse_report(
        &fixture("searchstream_error.json"),
        &ParseContext::default(),
    )
    .expect_err("error");
    assert_eq!(e.kind, ErrorKind::PlatformError);
    assert_eq!(
        e.message,
        "Google Ads API error 400 INVALID_ARGUMENT: Request contains an invalid argument."
    );
}

#[test]
fn a_search_page_without_results_is_zero_rows() {
    // Proto3 JSON omits the empty `results` list: an empty Search page is only
    // `fieldMask` and `requestId` (and a searchStream of such chunks).
    let page = parse("search_empty_page.json");
    assert!(page.rows.is_empty() && page.notices.is_empty());
    assert!(parse("searchstream_no_results.json").rows.is_empty());
    // Something that is not a Search response at all is still refused.
    for body in [&b"{}"[..], br#"{"data":[]}"#] {
        let e = parse_report(body, &ParseContext::default()).expect_err("not a response");
        assert_eq!(
            (e.kind, e.path.as_str()),
            (ErrorKind::InvalidShape, "/results")
        );
    }
}

#[test]
fn a_row_without_campaign_names_its_level() {
    let ctx = ParseContext {
        account_id: Some("1234567890".into()),
        ..Default::default()
    };
    let ad = br#"{"results":[{"adGroup":{"id":"5"},"adGroupAd":{"resourceName":"customers/1234567890/adGroupAds/5~6","ad":{"id":"6"}},
        "segments":{"date":"2026-11-01"}}],"fieldMask":"adGroup.id,adGroupAd.ad.id,segments.date"}"#;
    let e = parse_report(ad, &ctx).expect_err("no campaign");
    assert_eq!(e.path, "/results/0/campaign/id");
    assert!(
        e.message.contains("ad_group_ad") && e.message.contains("campaign.id"),
        "{e}"
    );
    assert!(!e.message.contains("customer-level"), "{e}");
    let group =
        br#"{"results":[{"adGroup":{"id":"5"},"segments":{"date":"2026-11-01"}}],"fieldMask":"x"}"#;
    let e = parse_report(group, &ctx).expect_err("no campaign");
    assert!(e.message.contains("ad_group (ad-group-level)"), "{e}");
    let customer = br#"{"results":[{"customer":{"id":"1"},"segments":{"date":"2026-11-01"}}],"fieldMask":"x"}"#;
    let e = parse_report(customer, &ctx).expect_err("no campaign");
    assert!(e.message.contains("customer-level"), "{e}");
}
