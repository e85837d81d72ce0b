//! The LinkedIn adapter on recorded-shape adAnalytics payloads (`tests/fixtures/`).

use adpipe_plugin_linkedin::{parse_report, parse_webhook};
use adpipe_plugin_sdk::{ErrorKind, ParseContext, RowBatch};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn ctx() -> ParseContext {
    ParseContext {
        account_id: Some("509876".into()),
        currency: Some("USD".into()),
        ..Default::default()
    }
}

fn parse(name: &str) -> RowBatch {
    parse_report(&fixture(name), &ctx()).expect("fixture parses")
}

fn sum(b: &RowBatch, campaign: &str, day: &str) -> (u64, u64, i64, i64, i64) {
    b.rows
        .iter()
        .filter(|r| {
            b.str(r.campaign_id.expect("campaign")) == campaign && r.date.to_string() == day
        })
        .fold((0, 0, 0, 0, 0), |t, r| {
            (
                t.0 + r.impressions,
                t.1 + r.clicks,
                t.2 + r.spend_micros,
                t.3 + r.conversions_micros,
                t.4 + r.conversion_value_micros,
            )
        })
}

#[test]
fn statistics_pages_total_exactly_and_link_the_next_page() {
    let (p1, p2) = (
        parse("adanalytics_statistics_page1.json"),
        parse("adanalytics_statistics_page2.json"),
    );
    assert_eq!((p1.rows.len(), p2.rows.len()), (4, 3));
    assert_eq!(
        sum(&p1, "612345001", "2026-11-01"),
        (20_330, 119, 562_420_000, 6_000_000, 1_500_000_000)
    );
    assert_eq!(
        sum(&p2, "612345002", "2026-11-02"),
        (21_100, 133, 588_000_000, 7_000_000, 1_710_250_000)
    );
    assert!(p1
        .rows
        .iter()
        .all(|r| r.ad_id.is_some() && r.ad_group_id.is_none()));
    assert!(p1
        .rows
        .iter()
        .all(|r| p1.str(r.account_id.expect("account")) == "509876"));
    let next = p1.next_page.as_ref().expect("next");
    assert!(
        next.url
            .starts_with("https://api.linkedin.com/rest/adAnalytics?q=statistics")
            && next.url.ends_with("start=4&count=4")
    );
    assert!(p2.next_page.is_none(), "a prev link is not a next page");
    let leads: i64 = p1
        .extras
        .iter()
        .filter(|e| p1.str(e.name) == "one_click_leads")
        .map(|e| e.value_micros)
        .sum();
    assert_eq!(leads, 12_000_000);
}

#[test]
fn campaign_pivot_restatement_zero_rows() {
    let c = parse("adanalytics_campaign.json");
    assert!(c.rows.iter().all(|r| r.ad_id.is_none()));
    assert_eq!(
        sum(&c, "612345001", "2026-11-01").0,
        20_330,
        "campaign row equals its creatives' sum"
    );
    let r = parse("adanalytics_restated.json");
    assert_eq!(
        (r.rows[0].impressions, r.rows[0].spend_micros),
        (14_350, 418_000_000)
    );
    let z = parse("adanalytics_zero_rows.json");
    assert_eq!(
        z.rows
            .iter()
            .map(|r| (r.impressions, r.spend_micros))
            .collect::<Vec<_>>(),
        vec![(0, 0), (12, 0)]
    );
}

#[test]
fn all_granularity_and_errors_are_explained() {
    let e =
        parse_report(&fixture("adanalytics_all_granularity.json"), &ctx()).expect_err("30-day row");
    assert_eq!(
        (e.kind, e.path.as_str()),
        (ErrorKind::InvalidValue, "/elements/0/dateRange/end")
    );
    let e = parse_report(&fixture("error_throttled.json"), &ctx()).expect_err("throttled");
    assert_eq!(e.kind, ErrorKind::PlatformError);
    assert!(
        e.message.contains("429") && e.message.contains("throttle"),
        "{e}"
    );
}

#[test]
fn lead_notifications_become_deltas() {
    let b =
        parse_webhook(&fixture("webhook_leads.json"), &ParseContext::default()).expect("parses");
    assert_eq!(b.rows.len(), 2);
    assert_eq!(
        b.str(b.rows[0].dedup_key.expect("key")),
        "lead:urn:li:leadGenFormResponse:8d4e55c0-1a2b-4c3d-9e8f-0123456789ab"
    );
    assert_eq!(b.str(b.rows[0].ad_id.expect("creative")), "880003");
    assert_eq!(b.str(b.rows[0].account_id.expect("account")), "509876");
    assert_eq!(b.rows[0].date.to_string(), "2026-11-01");
    assert_eq!(
        b.notices.len(),
        1,
        "the organic lead is acknowledged, not counted"
    );
}

#[test]
fn cost_in_usd_stands_in_only_for_usd_rows() {
    // A request whose `fields` asked for costInUsd but not costInLocalCurrency.
    let b = parse("adanalytics_cost_in_usd_only.json");
    assert_eq!(
        sum(&b, "612345001", "2026-11-04"),
        (5_120, 31, 162_400_000, 2_000_000, 310_000_000),
        "USD rows: costInUsd is the spend, never 0"
    );
    for currency in [Some("EUR"), None] {
        let ctx = ParseContext {
            currency: currency.map(str::to_owned),
            ..ctx()
        };
        let e =
            parse_report(&fixture("adanalytics_cost_in_usd_only.json"), &ctx).expect_err("not USD");
        assert_eq!(
            (e.kind, e.path.as_str()),
            (ErrorKind::MissingContext, "/elements/0/costInLocalCurrency")
        );
        assert!(e.message.contains("add costInLocalCurrency"), "{e}");
    }
}

#[test]
fn a_metric_the_request_did_not_ask_for_is_an_error_not_zero() {
    // LinkedIn returns only what `fields` asked for: absent from every element.
    let page: serde_json::Value =
        serde_json::from_slice(&fixture("adanalytics_statistics_page1.json")).expect("json");
    for field in [
        "impressions",
        "clicks",
        "externalWebsiteConversions",
        "conversionValueInLocalCurrency",
    ] {
        let mut p = page.clone();
        for e in p["elements"].as_array_mut().expect("elements") {
            e.as_object_mut().expect("element").remove(field);
        }
        let e = parse_report(&serde_json::to_vec(&p).expect("json"), &ctx())
            .expect_err("not requested");
        assert_eq!(
            (e.kind, e.path.clone()),
            (ErrorKind::InvalidShape, format!("/elements/0/{field}")),
            "{e}"
        );
        assert!(
            e.message.contains(&format!("add {field} to `fields`")),
            "{e}"
        );
    }
    let mut p = page.clone();
    for e in p["elements"].as_array_mut().expect("elements") {
        let e = e.as_object_mut().expect("element");
        e.remove("costInLocalCurrency");
        e.remove("costInUsd");
    }
    let e = parse_report(&serde_json::to_vec(&p).expect("json"), &ctx()).expect_err("no cost");
    assert_eq!(e.path, "/elements/0/costInLocalCurrency");
}
