//! The Pinterest adapter on payloads shaped like the v5 API's documented
//! responses (`tests/fixtures/`): analytics arrays at the campaign, ad group
//! and ad levels, listing pages, error bodies; and the pull chain they drive.

use adpipe_plugin_pinterest::{parse_report, plan_pull, Pinterest};
use adpipe_plugin_sdk::{
    Adapter, Date, ErrorKind, HttpRequest, ParseContext, PullRequest, RowBatch,
};
use serde_json::Value;

const ACCOUNT: &str = "549755885175";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn ctx() -> ParseContext {
    ParseContext {
        account_id: Some(ACCOUNT.into()),
        currency: Some("USD".into()),
        ..Default::default()
    }
}

/// The context of a pulled page: the URL the host fetched (query, then the fragment).
fn pulled(request: &HttpRequest) -> ParseContext {
    let (base, fragment) = request.url.split_once('#').unwrap_or((&request.url, ""));
    let mut url = format!("{base}?{}", request.query_string());
    if !fragment.is_empty() {
        url = format!("{url}#{fragment}");
    }
    let mut c = ctx();
    c.options.push(("request.url".into(), url));
    c
}

fn parse(name: &str) -> RowBatch {
    parse_report(&fixture(name), &ctx()).expect("fixture parses")
}

/// Sums over a fixture's rows computed from the JSON itself, in micros.
fn json_sum(name: &str, column: &str, campaign: Option<&str>) -> i64 {
    let rows: Vec<Value> = serde_json::from_slice(&fixture(name)).expect("json");
    rows.iter()
        .filter(|r| campaign.is_none_or(|c| r["CAMPAIGN_ID"] == c))
        .map(|r| r[column].as_f64().map_or(0, |v| (v * 1e6).round() as i64))
        .sum()
}

#[test]
fn campaign_level_totals_are_exact() {
    let b = parse("analytics_campaigns.json");
    assert_eq!(b.rows.len(), 6);
    assert!(b.notices.is_empty() && b.next_page.is_none());
    let spend: i64 = b.rows.iter().map(|r| r.spend_micros).sum();
    let impressions: u64 = b.rows.iter().map(|r| r.impressions).sum();
    let clicks: u64 = b.rows.iter().map(|r| r.clicks).sum();
    let conversions: i64 = b.rows.iter().map(|r| r.conversions_micros).sum();
    let value: i64 = b.rows.iter().map(|r| r.conversion_value_micros).sum();
    assert_eq!(
        (spend, impressions, clicks, conversions, value),
        (112_430_000, 47_944, 561, 26_000_000, 1_542_350_000)
    );
    // The same figures summed from the JSON (micros columns are micros already).
    assert_eq!(
        spend * 1_000_000,
        json_sum("analytics_campaigns.json", "SPEND_IN_MICRO_DOLLAR", None)
    );
    assert_eq!(
        conversions,
        json_sum("analytics_campaigns.json", "TOTAL_CONVERSIONS", None)
    );
    let first = &b.rows[0];
    assert_eq!(b.str(first.campaign_id.expect("campaign")), "626744128982");
    assert_eq!(
        b.str(first.campaign_name.expect("name")),
        "Holiday Gifts – Prospecting"
    );
    assert_eq!(b.str(first.account_id.expect("account")), ACCOUNT);
    assert_eq!(first.date, Date::new(2026, 11, 1).expect("date"));
    assert_eq!(
        (first.hour, first.ad_group_id, first.ad_id, first.currency),
        (None, None, None, None)
    );
    assert_eq!(
        b.extras_of(0).collect::<Vec<_>>(),
        vec![("outbound_clicks", 95_000_000), ("saves", 41_000_000)]
    );
    // A column with no value is left out by Pinterest: zero.
    let no_value = &b.rows[3];
    assert_eq!(
        (
            no_value.conversions_micros,
            no_value.conversion_value_micros
        ),
        (2_000_000, 0)
    );
    let awareness = &b.rows[5];
    assert_eq!(
        (awareness.conversions_micros, awareness.spend_micros),
        (0, 4_980_000)
    );
}

#[test]
fn ad_group_and_ad_levels_add_up_to_their_parents() {
    let campaigns = parse("analytics_campaigns.json");
    let groups = parse("analytics_ad_groups.json");
    let ads = parse("analytics_ads.json");
    let sums = |b: &RowBatch| {
        b.rows.iter().fold((0i64, 0u64, 0u64, 0i64, 0i64), |s, r| {
            (
                s.0 + r.spend_micros,
                s.1 + r.impressions,
                s.2 + r.clicks,
                s.3 + r.conversions_micros,
                s.4 + r.conversion_value_micros,
            )
        })
    };
    let day_one = &campaigns.rows[0];
    assert_eq!(
        sums(&groups),
        (
            day_one.spend_micros,
            day_one.impressions,
            day_one.clicks,
            day_one.conversions_micros,
            day_one.conversion_value_micros
        )
    );
    assert_eq!(
        sums(&groups),
        (38_250_000, 12_040, 187, 9_000_000, 612_400_000)
    );
    let group = &groups.rows[0];
    assert_eq!(
        sums(&ads),
        (
            group.spend_micros,
            group.impressions,
            group.clicks,
            group.conversions_micros,
            group.conversion_value_micros
        )
    );
    assert!(groups
        .rows
        .iter()
        .all(|r| r.ad_group_id.is_some() && r.ad_id.is_none()));
    assert_eq!(
        groups.str(groups.rows[1].ad_group_name.expect("name")),
        "Gift guides – broad"
    );
    let ad = &ads.rows[1];
    assert_eq!(
        (
            ads.str(ad.campaign_id.expect("c")),
            ads.str(ad.ad_group_id.expect("g")),
            ads.str(ad.ad_id.expect("a"))
        ),
        ("626744128982", "2680069420001", "687198000002")
    );
    assert_eq!(ads.str(ad.ad_name.expect("name")), "Candles idea pin");
}

#[test]
fn zero_rows_restatement_and_platform_errors() {
    let zero = parse("analytics_zero_rows.json");
    assert!(zero.rows.is_empty() && zero.notices.is_empty());
    // Zero rows need no currency either.
    assert!(parse_report(
        &fixture("analytics_zero_rows.json"),
        &ParseContext::default()
    )
    .is_ok());
    let restated = parse("analytics_restated.json");
    let original = &parse("analytics_campaigns.json").rows[0];
    let r = &restated.rows[0];
    assert_eq!(
        (r.date, restated.str(r.campaign_id.expect("c"))),
        (original.date, "626744128982")
    );
    assert_eq!(
        (r.conversions_micros, r.conversion_value_micros),
        (12_000_000, 801_400_000)
    );
    assert_eq!(r.spend_micros, original.spend_micros);
    for (name, message) in [
        (
            "error_rate_limited.json",
            "Pinterest API error 8: This request exceeded a rate limit.",
        ),
        (
            "error_unauthorized.json",
            "Pinterest API error 2: Authentication failed.",
        ),
        (
            "error_invalid_parameters.json",
            "Pinterest API error 400: Invalid ad account campaign analytics parameters.",
        ),
    ] {
        let e = parse_report(&fixture(name), &ctx()).expect_err(name);
        assert_eq!(
            (e.kind, e.path.as_str()),
            (ErrorKind::PlatformError, "/code"),
            "{name}"
        );
        assert!(e.message.starts_with(message), "{name}: {}", e.message);
    }
}

#[test]
fn context_and_options() {
    let body = fixture("analytics_campaigns.json");
    let e = parse_report(
        &body,
        &ParseContext {
            account_id: Some(ACCOUNT.into()),
            ..Default::default()
        },
    )
    .expect_err("no currency");
    assert_eq!((e.kind, e.path.as_str()), (ErrorKind::MissingContext, "/0"));
    let e = parse_report(
        br#"[{"DATE":"2026-11-01","CAMPAIGN_ID":"1","IMPRESSION_1":5}]"#,
        &ParseContext {
            currency: Some("EUR".into()),
            ..Default::default()
        },
    )
    .expect_err("no account");
    assert_eq!(
        (e.kind, e.path.as_str()),
        (ErrorKind::MissingContext, "/0/AD_ACCOUNT_ID")
    );
    // The row's AD_ACCOUNT_ID wins over the context's.
    let mut other = ctx();
    other.account_id = Some("1".into());
    let b = parse_report(&body, &other).expect("parses");
    assert_eq!(b.str(b.rows[0].account_id.expect("a")), ACCOUNT);
    // Counted columns are options: `none` counts nothing, names are upper-cased,
    // a column not in micros is a decimal.
    let mut c = ctx();
    c.options = vec![
        ("conversion_metric".into(), "none".into()),
        ("conversion_value_metric".into(), "total_conversions".into()),
    ];
    let b = parse_report(&body, &c).expect("parses");
    assert_eq!(
        (
            b.rows[0].conversions_micros,
            b.rows[0].conversion_value_micros
        ),
        (0, 9_000_000)
    );
    c.options = vec![("conversion_metric".into(), "TOTAL CONVERSIONS".into())];
    let e = parse_report(&body, &c).expect_err("bad option");
    assert_eq!(e.path, "/options/conversion_metric");
}

fn window() -> (Date, Date) {
    (
        Date::new(2026, 11, 1).expect("d"),
        Date::new(2026, 11, 14).expect("d"),
    )
}

fn pull(options: Vec<(String, String)>) -> PullRequest {
    PullRequest {
        account_id: ACCOUNT.into(),
        from: window().0,
        to: window().1,
        base_url: None,
        options,
    }
}

#[test]
fn a_pull_walks_listing_and_analytics_pages() {
    let plan = plan_pull(&pull(vec![])).expect("plan");
    assert_eq!(plan.len(), 1);
    let list1 = &plan[0];
    assert_eq!(
        list1.url,
        "https://api.pinterest.com/v5/ad_accounts/549755885175/campaigns#start_date=2026-11-01&end_date=2026-11-14"
    );
    assert_eq!(
        list1.query_string(),
        "entity_statuses=ACTIVE&entity_statuses=PAUSED&entity_statuses=ARCHIVED&page_size=250"
    );
    assert_eq!(list1.credential, adpipe_plugin_sdk::CredentialSlot::Bearer);

    // Listing page 1: no rows, next the analytics of its two campaigns, carrying the bookmark.
    let b = parse_report(&fixture("campaigns_page1.json"), &pulled(list1)).expect("listing");
    assert!(b.rows.is_empty());
    let analytics1 = b.next_page.expect("analytics");
    assert_eq!(
        analytics1.url,
        "https://api.pinterest.com/v5/ad_accounts/549755885175/campaigns/analytics#bookmark=Y2FtcGFpZ25zOjYyNjc0NDEyODk4Mw%2B%2F%3D%3D"
    );
    assert_eq!(
        analytics1.query_string(),
        "start_date=2026-11-01&end_date=2026-11-14&campaign_ids=626744128982&campaign_ids=626744128983\
         &columns=AD_ACCOUNT_ID,CAMPAIGN_ID,CAMPAIGN_NAME,SPEND_IN_MICRO_DOLLAR,IMPRESSION_1,CLICKTHROUGH_1,\
         TOTAL_CONVERSIONS,TOTAL_CHECKOUT_VALUE_IN_MICRO_DOLLAR,OUTBOUND_CLICK_1,REPIN_1&granularity=DAY"
    );

    // Its rows, then listing page 2 with the bookmark, percent-encoded whole.
    let b = parse_report(&fixture("analytics_campaigns.json"), &pulled(&analytics1))
        .expect("analytics");
    assert_eq!(b.rows.len(), 6);
    let list2 = b.next_page.expect("listing page 2");
    assert_eq!(list2.url, list1.url);
    assert_eq!(
        list2.query_string(),
        "entity_statuses=ACTIVE&entity_statuses=PAUSED&entity_statuses=ARCHIVED&page_size=250\
         &bookmark=Y2FtcGFpZ25zOjYyNjc0NDEyODk4Mw%2B%2F%3D%3D"
    );

    // The last listing page: analytics without a bookmark, and nothing after them.
    let b = parse_report(&fixture("campaigns_page2.json"), &pulled(&list2)).expect("listing 2");
    let analytics2 = b.next_page.expect("analytics 2");
    assert!(!analytics2.url.contains('#'), "{}", analytics2.url);
    assert!(analytics2
        .query_string()
        .contains("&campaign_ids=626744128990&columns="));
    let b = parse_report(&fixture("analytics_zero_rows.json"), &pulled(&analytics2))
        .expect("analytics 2");
    assert!(b.rows.is_empty() && b.next_page.is_none());

    // The same page with `?query` appended after the fragment (a URL composed
    // by concatenation rather than by an HTTP client) leads on alike.
    let mut appended = ctx();
    appended.options.push((
        "request.url".into(),
        format!("{}?{}", analytics1.url, analytics1.query_string()),
    ));
    let b = parse_report(&fixture("analytics_campaigns.json"), &appended).expect("analytics");
    assert_eq!(
        b.next_page.map(|p| p.query_string()),
        Some(list2.query_string())
    );
    let mut appended = ctx();
    appended.options.push((
        "request.url".into(),
        format!("{}?{}", list1.url, list1.query_string()),
    ));
    let b = parse_report(&fixture("campaigns_page1.json"), &appended).expect("listing");
    assert_eq!(b.next_page.map(|p| p.url), Some(analytics1.url.clone()));

    // A listing pushed by hand names no window: no rows, nothing to fetch.
    let b = parse("campaigns_page1.json");
    assert!(b.rows.is_empty() && b.next_page.is_none());
    assert!(
        b.notices[0].contains("carries no metrics"),
        "{:?}",
        b.notices
    );
}

#[test]
fn levels_base_urls_and_bad_requests() {
    let opts = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    };
    let mut request = pull(opts(&[
        ("level", "ad"),
        ("entity_statuses", "active"),
        ("conversion_value_metric", "none"),
    ]));
    request.base_url = Some("http://127.0.0.1:9/".into());
    let plan = plan_pull(&request).expect("plan");
    assert_eq!(
        plan[0].url,
        "http://127.0.0.1:9/v5/ad_accounts/549755885175/ads#start_date=2026-11-01&end_date=2026-11-14"
    );
    assert_eq!(
        plan[0].query_string(),
        "entity_statuses=ACTIVE&page_size=250"
    );
    let mut c = pulled(&plan[0]);
    c.options.extend(request.options.clone());
    let listing = br#"{"items":[{"id":"687198000001"},{"id":"687198000002"}],"bookmark":""}"#;
    let next = parse_report(listing, &c)
        .expect("listing")
        .next_page
        .expect("analytics");
    assert_eq!(
        next.url,
        "http://127.0.0.1:9/v5/ad_accounts/549755885175/ads/analytics"
    );
    assert!(next.query_string().contains(
        "&ad_ids=687198000001&ad_ids=687198000002&columns=AD_ACCOUNT_ID,CAMPAIGN_ID,CAMPAIGN_NAME,AD_GROUP_ID,AD_GROUP_NAME,AD_ID,AD_NAME,SPEND_IN_MICRO_DOLLAR,IMPRESSION_1,CLICKTHROUGH_1,TOTAL_CONVERSIONS,OUTBOUND_CLICK_1,REPIN_1&granularity=DAY"
    ), "{}", next.query_string());

    for (request, path) in [
        (
            PullRequest {
                account_id: "act_1".into(),
                ..pull(vec![])
            },
            "/account_id",
        ),
        (
            PullRequest {
                to: Date::new(2027, 2, 1).expect("d"),
                ..pull(vec![])
            },
            "/until",
        ),
        (
            PullRequest {
                to: Date::new(2026, 10, 1).expect("d"),
                ..pull(vec![])
            },
            "/until",
        ),
        (pull(opts(&[("level", "keyword")])), "/options/level"),
        (
            pull(opts(&[("entity_statuses", "RUNNING")])),
            "/options/entity_statuses",
        ),
        (
            pull(opts(&[("conversion_metric", "a-b")])),
            "/options/conversion_metric",
        ),
    ] {
        assert_eq!(plan_pull(&request).expect_err(path).path, path);
    }
    // Exactly 90 days is allowed.
    assert!(plan_pull(&PullRequest {
        to: Date::new(2027, 1, 29).expect("d"),
        ..pull(vec![])
    })
    .is_ok());

    // A pulled page of another granularity is refused, not misfiled as days.
    let mut hourly = pulled(&plan[0]);
    hourly.options = vec![(
        "request.url".into(),
        "https://api.pinterest.com/v5/ad_accounts/549755885175/campaigns/analytics?start_date=2026-11-01&end_date=2026-11-01&campaign_ids=1&columns=SPEND_IN_MICRO_DOLLAR&granularity=HOUR".into(),
    )];
    let e = parse_report(&fixture("analytics_campaigns.json"), &hourly).expect_err("hourly");
    assert_eq!(e.kind, ErrorKind::Unsupported);
    // A listing page of a pull without its window (the fragment lost) says so.
    let mut lost = ctx();
    lost.options.push((
        "request.url".into(),
        "https://api.pinterest.com/v5/ad_accounts/549755885175/campaigns?page_size=250".into(),
    ));
    let e = parse_report(&fixture("campaigns_page1.json"), &lost).expect_err("no window");
    assert_eq!(e.kind, ErrorKind::Unsupported);
}

#[test]
fn describe_declares_options_versions_and_hosts() {
    let info = Pinterest::describe();
    assert_eq!(
        (info.name.as_str(), info.platform.as_str()),
        ("pinterest", "pinterest")
    );
    assert_eq!(info.allowed_hosts, vec!["api.pinterest.com".to_owned()]);
    assert_eq!(info.api_versions[0].name, "v5");
    let names: Vec<_> = info.options.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "level",
            "conversion_metric",
            "conversion_value_metric",
            "entity_statuses"
        ]
    );
    assert_eq!(
        info.extra_metrics,
        vec!["outbound_clicks".to_owned(), "saves".to_owned()]
    );
}
