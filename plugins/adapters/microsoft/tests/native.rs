//! The Microsoft Advertising adapter on report files and Reporting API
//! answers shaped as the service delivers them (`tests/fixtures/`).

use adpipe_plugin_microsoft::{parse_report, plan_pull, zip, Microsoft};
use adpipe_plugin_sdk::{
    Adapter, CredentialSlot, Date, ErrorKind, ParseContext, PullRequest, Row, RowBatch,
};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn ctx() -> ParseContext {
    ParseContext {
        account_id: Some("187654321".into()),
        ..Default::default()
    }
}

fn parse(name: &str) -> RowBatch {
    parse_report(&fixture(name), &ctx()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// (impressions, clicks, spend, conversions, conversion value) summed over `rows`.
fn sums<'a>(rows: impl IntoIterator<Item = &'a Row>) -> (u64, u64, i64, i64, i64) {
    rows.into_iter().fold((0, 0, 0, 0, 0), |s, r| {
        (
            s.0 + r.impressions,
            s.1 + r.clicks,
            s.2 + r.spend_micros,
            s.3 + r.conversions_micros,
            s.4 + r.conversion_value_micros,
        )
    })
}

fn of_campaign<'a>(b: &'a RowBatch, campaign: &'a str) -> impl Iterator<Item = &'a Row> + 'a {
    b.rows
        .iter()
        .filter(move |r| r.campaign_id.map(|c| b.str(c)) == Some(campaign))
}

#[test]
fn campaign_daily_report_totals_exactly() {
    let b = parse("campaign_daily.csv");
    assert_eq!(b.rows.len(), 4);
    assert_eq!(
        sums(&b.rows),
        (83_686, 2_803, 2_067_430_000, 102_500_000, 8_605_800_000)
    );
    assert_eq!(
        sums(of_campaign(&b, "514000101")),
        (24_745, 1_864, 810_430_000, 79_500_000, 5_996_300_000)
    );
    let r = &b.rows[1];
    assert_eq!(
        b.str(r.campaign_name.expect("name")),
        "Generic, Tents & \"Camping\""
    );
    assert_eq!(b.str(r.account_id.expect("account")), "187654321");
    assert_eq!(b.str(r.currency.expect("currency")), "USD");
    assert_eq!(r.date, Date::new(2026, 11, 1).expect("date"));
    assert_eq!(
        (r.hour, r.ad_group_id, r.ad_id, r.breakdown),
        (None, None, None, None)
    );
    assert_eq!(
        b.extras_of(0).collect::<Vec<_>>(),
        vec![
            ("all_conversions", 44_000_000),
            ("view_through_conversions", 3_000_000)
        ]
    );
    assert!(b.notices.is_empty(), "{:?}", b.notices);
    assert!(b.next_page.is_none());
}

#[test]
fn the_zip_download_parses_like_the_file_inside_it() {
    let zipped = parse("campaign_daily.zip");
    let plain = parse("campaign_daily.csv");
    assert_eq!(zipped.rows, plain.rows);
    assert_eq!(zipped.strings, plain.strings);
    // So does a stored (uncompressed) archive, and a cut download is refused.
    let csv = fixture("campaign_daily.csv");
    let stored = zip::archive("report.csv", &csv, false);
    assert_eq!(
        parse_report(&stored, &ctx()).expect("stored").rows,
        plain.rows
    );
    let bytes = fixture("campaign_daily.zip");
    let e = parse_report(&bytes[..bytes.len() - 30], &ctx()).expect_err("cut");
    assert_eq!(e.kind, ErrorKind::Malformed);
}

#[test]
fn ad_group_and_ad_levels_add_up_to_their_campaign() {
    let groups = parse("adgroup_daily_no_header.csv");
    assert_eq!(groups.rows.len(), 3);
    assert!(groups
        .rows
        .iter()
        .all(|r| r.ad_group_id.is_some() && r.ad_id.is_none()));
    let day_one_brand = parse("campaign_daily.csv");
    assert_eq!(
        sums(of_campaign(&groups, "514000101")),
        sums(of_campaign(&day_one_brand, "514000101").take(1))
    );
    assert_eq!(
        groups.str(groups.rows[1].ad_group_name.expect("name")),
        "Brand - Misspellings"
    );

    let ads = parse("ad_daily.tsv");
    assert_eq!(ads.rows.len(), 3);
    assert_eq!(sums(&ads.rows), sums(groups.rows.iter().take(1)));
    assert_eq!(
        sums(&ads.rows),
        (8_120, 610, 260_150_000, 27_500_000, 2_100_000_000)
    );
    let keys: Vec<_> = ads
        .rows
        .iter()
        .map(|r| {
            (
                ads.str(r.ad_id.expect("ad")),
                ads.str(r.breakdown.expect("device")),
            )
        })
        .collect();
    assert_eq!(
        keys,
        vec![
            ("82000000111", "device_type=Computer"),
            ("82000000111", "device_type=Smartphone"),
            ("82000000112", "device_type=Computer"),
        ]
    );
    assert_eq!(
        ads.str(ads.rows[2].ad_name.expect("title")),
        "Free Shipping on Tents"
    );
    // `--` is the service's "no value": zero, so no extra is recorded.
    assert_eq!(
        ads.extras_of(1).collect::<Vec<_>>(),
        vec![("all_conversions", 8_000_000)]
    );
}

#[test]
fn hourly_zero_rows_and_restated() {
    let h = parse("campaign_hourly.csv");
    assert_eq!(
        h.rows.iter().map(|r| r.hour).collect::<Vec<_>>(),
        vec![Some(9), Some(10)]
    );
    assert_eq!(
        sums(&h.rows),
        (2_515, 185, 78_450_000, 7_500_000, 570_500_000)
    );
    assert!(
        h.notices[0].contains("Potential Incomplete Data"),
        "{:?}",
        h.notices
    );
    let zero = parse("campaign_zero_rows.csv");
    assert!(zero.rows.is_empty());
    let restated = parse("campaign_restated.csv");
    let brand = &restated.rows[0];
    assert_eq!(
        (
            brand.date,
            brand.spend_micros,
            brand.conversions_micros,
            brand.conversion_value_micros
        ),
        (
            Date::new(2026, 11, 1).expect("date"),
            415_020_000,
            43_000_000,
            3_245_900_000
        )
    );
}

#[test]
fn platform_errors_are_refused_as_such() {
    for (name, code) in [
        ("error_invalid_credentials.json", "105 InvalidCredentials"),
        ("error_null_request.json", "100 NullRequest"),
        ("soap_fault.xml", "105 InvalidCredentials"),
        ("poll_error.json", "Status Error"),
    ] {
        let e = parse_report(&fixture(name), &ctx()).expect_err(name);
        assert_eq!(e.kind, ErrorKind::PlatformError, "{name}: {e}");
        assert!(e.message.contains(code), "{name}: {e}");
    }
    let e = parse_report(&fixture("error_null_request.json"), &ctx()).expect_err("error");
    assert_eq!(e.path, "/OperationErrors/0");
    assert!(
        e.message.contains("65602e3d-f6ff-4968-920c-e420989c9e31"),
        "{e}"
    );
}

#[test]
fn a_pull_submits_polls_and_downloads() {
    let request = PullRequest {
        account_id: "187654321".into(),
        from: Date::new(2026, 11, 1).expect("date"),
        to: Date::new(2026, 11, 14).expect("date"),
        base_url: None,
        options: vec![
            ("customer_id".into(), "251186883".into()),
            ("level".into(), "ad".into()),
            ("api_version".into(), "v13".into()),
        ],
    };
    let plan = plan_pull(&request).expect("plan");
    assert_eq!(plan.len(), 1);
    let submit = &plan[0];
    assert_eq!(
        (submit.method.as_str(), submit.url.as_str()),
        (
            "POST",
            "https://reporting.api.bingads.microsoft.com/Reporting/v13/GenerateReport/Submit"
        )
    );
    assert_eq!(submit.credential, CredentialSlot::Bearer);
    assert!(submit
        .headers
        .contains(&("CustomerId".into(), "251186883".into())));
    assert!(submit
        .headers
        .contains(&("CustomerAccountId".into(), "187654321".into())));
    let body: serde_json::Value =
        serde_json::from_slice(submit.body.as_deref().expect("body")).expect("json");
    let report = &body["ReportRequest"];
    assert_eq!(report["Type"], "AdPerformanceReportRequest");
    assert_eq!(report["Aggregation"], "Daily");
    assert_eq!(report["Format"], "Csv");
    assert_eq!(report["Scope"]["AccountIds"][0], 187_654_321u64);
    assert_eq!(
        report["Time"]["CustomDateRangeEnd"],
        serde_json::json!({"Day": 14, "Month": 11, "Year": 2026})
    );
    let columns: Vec<&str> = report["Columns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    for column in [
        "TimePeriod",
        "CampaignId",
        "AdGroupId",
        "AdId",
        "Spend",
        "Conversions",
        "Revenue",
    ] {
        assert!(columns.contains(&column), "{columns:?}");
    }

    // Submit answer → poll, with the same account headers and the id.
    let mut c = ctx();
    c.options = vec![
        ("customer_id".into(), "251186883".into()),
        ("request.url".into(), submit.url.clone()),
    ];
    let b = parse_report(&fixture("submit_response.json"), &c).expect("submit answer");
    assert!(b.rows.is_empty());
    let poll = b.next_page.expect("poll");
    assert_eq!(
        poll.url,
        "https://reporting.api.bingads.microsoft.com/Reporting/v13/GenerateReport/Poll"
    );
    assert_eq!(poll.query_string(), "ReportRequestId=30000000263620149");
    assert_eq!(
        poll.body.as_deref(),
        Some(br#"{"ReportRequestId":"30000000263620149"}"#.as_slice())
    );
    assert!(poll
        .headers
        .contains(&("CustomerAccountId".into(), "187654321".into())));
    assert_eq!(poll.credential, CredentialSlot::Bearer);

    // Pending → the same poll again (the id comes back through the page URL).
    c.options[1].1 = format!("{}?{}", poll.url, poll.query_string());
    let again = parse_report(&fixture("poll_pending.json"), &c)
        .expect("pending")
        .next_page
        .expect("poll again");
    assert_eq!(
        (again.url.as_str(), again.body.as_deref()),
        (poll.url.as_str(), poll.body.as_deref())
    );
    // Pushed without the page URL, a Pending answer says what it is.
    let e = parse_report(&fixture("poll_pending.json"), &ctx()).expect_err("pushed");
    assert_eq!(e.kind, ErrorKind::MissingContext);

    // Success → the pre-signed download, without credential, query untouched.
    let download = parse_report(&fixture("poll_success.json"), &c)
        .expect("success")
        .next_page
        .expect("download");
    assert_eq!(download.method, "GET");
    assert_eq!(
        download.url,
        "https://bingadsappsstorageprod.blob.core.windows.net:443/download-reportdownload/30000000263620149.zip"
    );
    assert_eq!(download.credential, CredentialSlot::None);
    assert!(download.headers.is_empty());
    assert_eq!(
        download.query_string(),
        "skoid=5d0a2e6b&sv=2021-08-06&st=2026-12-03T02%3A14%3A05Z&se=2026-12-03T02%3A19%3A05Z&sr=b&sp=r&sig=Q2F0YWxvZ3VlJTJCc2lnbmF0dXJl%2BZXhhbXBsZQ%3D%3D"
    );
    let host = download.url.split('/').nth(2).unwrap_or("");
    assert!(Microsoft::describe()
        .allowed_hosts
        .iter()
        .any(|h| host.starts_with(h.as_str())));

    let none = parse_report(&fixture("poll_success_no_data.json"), &c).expect("no data");
    assert!(none.rows.is_empty() && none.next_page.is_none());
    assert!(none.notices[0].contains("no data"), "{:?}", none.notices);

    let bad = PullRequest {
        account_id: "X1234567".into(),
        ..request
    };
    assert_eq!(
        plan_pull(&bad).expect_err("account number").path,
        "/account_id"
    );
}

fn edited(name: &str, from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(fixture(name)).expect("utf8");
    assert!(text.contains(from), "{from}");
    text.replacen(from, to, 1).into_bytes()
}

#[test]
fn refusals_name_the_line_and_column() {
    let e = parse_report(
        &edited("campaign_daily.csv", "\"412.37\"", "\"41x.37\""),
        &ctx(),
    )
    .expect_err("bad spend");
    assert_eq!(
        (e.kind, e.path.as_str()),
        (ErrorKind::InvalidValue, "/line/12/Spend")
    );
    let e = parse_report(
        &edited("campaign_daily.csv", "\"2026-11-02\"", "\"2026-11-31\""),
        &ctx(),
    )
    .expect_err("bad day");
    assert_eq!(e.path, "/line/14/TimePeriod");
    assert!(e.message.contains("November 2026 has 30 days"), "{e}");
    // A missing counted column is refused unless the pipeline counts none.
    let body = edited("adgroup_daily_no_header.csv", "\"Revenue\"", "\"Assists\"");
    let e = parse_report(&body, &ctx()).expect_err("no revenue");
    assert_eq!(
        (e.kind, e.path.as_str()),
        (ErrorKind::InvalidShape, "/columns/Revenue")
    );
    let mut none = ctx();
    none.options.push(("revenue_column".into(), "none".into()));
    let b = parse_report(&body, &none).expect("revenue not counted");
    assert_eq!(b.rows[0].conversion_value_micros, 0);
    // A truncated file: the header's Rows disagrees.
    let e = parse_report(&edited("campaign_daily.csv", "Rows: 4", "Rows: 5"), &ctx())
        .expect_err("rows");
    assert_eq!(e.path, "/Rows");
    // Weekly rows are not days.
    let e = parse_report(
        &edited(
            "campaign_daily.csv",
            "Aggregation: Daily",
            "Aggregation: Weekly",
        ),
        &ctx(),
    )
    .expect_err("weekly");
    assert_eq!(e.kind, ErrorKind::Unsupported);
    // Two rows of one campaign-day: a splitting column adpipe does not read.
    let body = edited(
        "campaign_daily.csv",
        "\"2026-11-02\",\"187654321\",\"Contoso Outdoor\",\"514000101\"",
        "\"2026-11-01\",\"187654321\",\"Contoso Outdoor\",\"514000101\"",
    );
    let e = parse_report(&body, &ctx()).expect_err("duplicate");
    assert_eq!(
        (e.kind, e.path.as_str()),
        (ErrorKind::InvalidShape, "/line/14")
    );
    assert!(e.message.contains("line 12"), "{e}");
    // Not the shape of a report at all.
    assert_eq!(
        parse_report(b"", &ctx()).expect_err("empty").kind,
        ErrorKind::InvalidShape
    );
    assert_eq!(
        parse_report(b"{\"x\":1}", &ctx()).expect_err("json").kind,
        ErrorKind::InvalidShape
    );
    assert_eq!(
        parse_report(b"{", &ctx()).expect_err("json").kind,
        ErrorKind::Malformed
    );
}

#[test]
fn format_version_1_0_hours_and_thousands_separators() {
    let body = edited(
        "campaign_hourly.csv",
        "\"2026-11-01|9\"",
        "\"11/1/2026 12:00:00 AM|9\"",
    );
    let body = String::from_utf8(body)
        .expect("utf8")
        .replacen("\"1200\"", "\"1,200\"", 1)
        .replacen("\"260.00\"", "\"1,260.00\"", 1);
    let b = parse_report(body.as_bytes(), &ctx()).expect("format 1.0");
    let r = &b.rows[0];
    assert_eq!(
        (r.date, r.hour),
        (Date::new(2026, 11, 1).expect("date"), Some(9))
    );
    assert_eq!(
        (r.impressions, r.conversion_value_micros),
        (1_200, 1_260_000_000)
    );
    let bad = body.replacen("\"1,200\"", "\"12,00\"", 1);
    let e = parse_report(bad.as_bytes(), &ctx()).expect_err("bad grouping");
    assert_eq!(e.path, "/line/12/Impressions");
}
