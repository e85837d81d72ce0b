//! Arbitrary bytes, JSON and report-like text never panic the parser;
//! rejections say what is wrong.

use adpipe_plugin_microsoft::{parse_report, zip};
use adpipe_plugin_sdk::ParseContext;
use proptest::prelude::*;

const KEYS: &[&str] = &[
    "ReportRequestId",
    "ReportRequestStatus",
    "Status",
    "ReportDownloadUrl",
    "OperationErrors",
    "BatchErrors",
    "Errors",
    "Code",
    "ErrorCode",
    "Message",
    "TrackingId",
    "Type",
];

const CELLS: &[&str] = &[
    "TimePeriod",
    "AccountId",
    "CampaignId",
    "CampaignName",
    "AdGroupId",
    "AdId",
    "DeviceType",
    "CurrencyCode",
    "Impressions",
    "Clicks",
    "Spend",
    "Conversions",
    "Revenue",
    "AllConversions",
    "Report Name: x",
    "Rows: 2",
    "Rows: x",
    "Report Aggregation: Hourly",
    "Report Aggregation: Weekly",
    "Potential Incomplete Data: true",
    "©2026 Microsoft Corporation. All rights reserved. ",
    "Total",
    "2026-11-01",
    "2026-11-01|9",
    "11/1/2026 12:00:00 AM|25",
    "2026-02-30",
    "1",
    "514000101",
    "1,000.50",
    "12,34",
    "--",
    "",
    "-5",
    "1e400",
    "\"",
    "USD",
];

fn ctx() -> ParseContext {
    ParseContext {
        account_id: Some("1".into()),
        options: vec![(
            "request.url".into(),
            "http://127.0.0.1:1/Reporting/v13/GenerateReport/Poll?ReportRequestId=%2".into(),
        )],
        ..Default::default()
    }
}

fn report_text() -> impl Strategy<Value = String> {
    let cell = prop::sample::select(CELLS).prop_map(|c| format!("\"{}\"", c.replace('"', "\"\"")));
    let line = prop::collection::vec(cell, 0..8).prop_map(|cells| cells.join(","));
    prop::collection::vec(line, 0..12).prop_map(|lines| lines.join("\r\n"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = parse_report(&bytes, &ctx()) {
            prop_assert!(!e.message.is_empty());
        }
        let mut zipped = b"PK\x03\x04".to_vec();
        zipped.extend_from_slice(&bytes);
        if let Err(e) = parse_report(&zipped, &ctx()) {
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn arbitrary_json_never_panics(value in adpipe_plugin_sdk::testing::arbitrary_json(KEYS)) {
        let bytes = serde_json::to_vec(&value).expect("encode");
        if let Err(e) = parse_report(&bytes, &ctx()) {
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn report_like_text_never_panics(text in report_text(), deflate in any::<bool>()) {
        for body in [text.as_bytes().to_vec(), zip::archive("r.csv", text.as_bytes(), deflate)] {
            if let Err(e) = parse_report(&body, &ctx()) {
                prop_assert!(!e.message.is_empty());
            }
        }
    }
}
