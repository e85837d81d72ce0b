//! The insights request a scheduled pull makes for one account and window.

use adpipe_plugin_sdk::{CredentialSlot, HttpRequest, PluginError, PullRequest};

pub const GRAPH_API: &str = "https://graph.facebook.com";
/// Marketing API versions, newest first, with the day Meta stops serving
/// them (developers.facebook.com/docs/marketing-api/marketing-api-changelog;
/// the Marketing API keeps a version about a year, shorter than the Graph API;
/// `None`: not announced yet). v24.0 expired 2026-11-10.
pub const API_VERSIONS: &[(&str, Option<&str>)] = &[
    ("v27.0", None),
    ("v26.0", None),
    ("v25.0", Some("2027-02-23")),
];
const FIELDS: &str = "account_id,account_currency,campaign_id,campaign_name,adset_id,adset_name,ad_id,ad_name,date_start,date_stop,impressions,clicks,spend,actions,action_values";

/// One GET per account; later pages come from `paging.next`.
pub fn plan(request: &PullRequest) -> Result<Vec<HttpRequest>, PluginError> {
    let account = request.account_id.trim_start_matches("act_");
    if account.is_empty() || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PluginError::value(
            "/account_id",
            format!("`{}` is not a Meta ad account id", request.account_id),
        ));
    }
    if request.to < request.from {
        return Err(PluginError::value(
            "/until",
            "the window ends before it starts",
        ));
    }
    let level = adpipe_plugin_sdk::option(&request.options, "level").unwrap_or("ad");
    if !["campaign", "adset", "ad"].contains(&level) {
        return Err(PluginError::value(
            "/options/level",
            format!("`{level}` is not one of campaign, adset, ad"),
        ));
    }
    let version =
        adpipe_plugin_sdk::option(&request.options, "api_version").unwrap_or(API_VERSIONS[0].0);
    let base = request
        .base_url
        .as_deref()
        .unwrap_or(GRAPH_API)
        .trim_end_matches('/');
    Ok(vec![HttpRequest {
        method: "GET".into(),
        url: format!("{base}/{version}/act_{account}/insights"),
        query: vec![
            ("level".into(), level.into()),
            ("time_increment".into(), "1".into()),
            (
                "time_range".into(),
                format!(r#"{{"since":"{}","until":"{}"}}"#, request.from, request.to),
            ),
            ("fields".into(), FIELDS.into()),
            ("limit".into(), "500".into()),
        ],
        headers: vec![],
        body: None,
        credential: CredentialSlot::Query("access_token".into()),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use adpipe_plugin_sdk::Date;

    #[test]
    fn plans_one_daily_insights_request() {
        let request = PullRequest {
            account_id: "act_123".into(),
            from: Date::new(2026, 10, 1).expect("date"),
            to: Date::new(2026, 10, 28).expect("date"),
            base_url: Some("http://127.0.0.1:9999/".into()),
            options: vec![],
        };
        let plan = plan(&request).expect("plan");
        assert_eq!(plan[0].url, "http://127.0.0.1:9999/v27.0/act_123/insights");
        let pinned = PullRequest {
            options: vec![("api_version".into(), "v25.0".into())],
            ..request.clone()
        };
        assert_eq!(
            super::plan(&pinned).expect("plan")[0].url,
            "http://127.0.0.1:9999/v25.0/act_123/insights"
        );
        assert!(plan[0].query.contains(&(
            "time_range".into(),
            r#"{"since":"2026-10-01","until":"2026-10-28"}"#.into()
        )));
        assert_eq!(
            plan[0].credential,
            CredentialSlot::Query("access_token".into())
        );
        let bad = PullRequest {
            account_id: "me".into(),
            ..request
        };
        assert_eq!(
            super::plan(&bad).expect_err("bad account").path,
            "/account_id"
        );
    }
}
