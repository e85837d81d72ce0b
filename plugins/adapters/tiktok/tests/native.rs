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

#[test]
fn placeholders_are_absent_values_and_unused_metrics_are_ignored() {
    // TikTok answers "-" for a metric it cannot compute; some connectors pass
    // null. Counted ones are zero; unused ones (cost_per_secondary_goal_result)
    // never reject the page, whatever their value.
    let b = parse("report_placeholders.json");
    assert_eq!(b.rows.len(), 3);
    let sums = |r: &adpipe_plugin_sdk::Row| {
        (
            r.impressions,
            r.clicks,
            r.spend_micros,
            r.conversions_micros,
            r.conversion_value_micros,
        )
    };
    assert_eq!(sums(&b.rows[0]), (3_120, 41, 15_200_000, 0, 0));
    assert_eq!(
        sums(&b.rows[1]),
        (2_010, 17, 9_800_000, 2_000_000, 58_000_000)
    );
    assert_eq!(sums(&b.rows[2]), (0, 0, 0, 0, 0));
    assert_eq!(
        b.extras_of(1).collect::<Vec<_>>(),
        vec![("complete_payment", 2_000_000)]
    );
    assert_eq!(b.extras_of(0).count(), 0);
    // An unused metric of any JSON type is ignored.
    let body = String::from_utf8(fixture("report_placeholders.json"))
        .expect("utf8")
        .replace(
            r#""cost_per_conversion": "4.90""#,
            r#""cost_per_conversion": {"odd": [1, true]}"#,
        );
    assert_eq!(
        parse_report(body.as_bytes(), &ctx())
            .expect("parses")
            .rows
            .len(),
        3
    );
}

#[test]
fn a_counted_metric_that_was_not_requested_is_an_error_not_zero() {
    // TikTok returns only the metrics the request asked for.
    let body = String::from_utf8(fixture("report_placeholders.json"))
        .expect("utf8")
        .replace(r#""spend": "9.80","#, "");
    let e = parse_report(body.as_bytes(), &ctx()).expect_err("no spend");
    assert_eq!(
        (e.kind, e.path.as_str()),
        (ErrorKind::InvalidShape, "/data/list/1/metrics/spend")
    );
    assert!(
        e.message.contains("`spend`") && e.message.contains("metrics"),
        "{e}"
    );
    // A report without conversions is fine once the pipeline says it counts none.
    let body = String::from_utf8(fixture("report_placeholders.json"))
        .expect("utf8")
        .replace(r#""conversion": "2","#, "");
    let e = parse_report(body.as_bytes(), &ctx()).expect_err("no conversion");
    assert_eq!(e.path, "/data/list/1/metrics/conversion");
    let mut none = ctx();
    none.options
        .push(("conversion_metric".into(), "none".into()));
    let b = parse_report(body.as_bytes(), &none).expect("conversions not counted");
    assert_eq!(b.rows[1].conversions_micros, 0);
    // A counted metric of the wrong type is refused naming it.
    let body = String::from_utf8(fixture("report_placeholders.json"))
        .expect("utf8")
        .replace(r#""clicks": "17""#, r#""clicks": [17]"#);
    let e = parse_report(body.as_bytes(), &ctx()).expect_err("bad clicks");
    assert_eq!(e.path, "/data/list/1/metrics/clicks");
}
