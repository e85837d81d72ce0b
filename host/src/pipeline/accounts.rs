//! Webhook deliveries bound to their pipeline (`webhook_accounts`).
//!
//! Tenants that share one platform app share its webhook secret, so a
//! correctly signed delivery for one tenant could be posted to another
//! tenant's URL. A pipeline that lists the accounts its webhooks may name
//! refuses a delivery naming any other. What a delivery names:
//!
//! - **every platform**: the `account_id` of each row the adapter made of it
//!   (LinkedIn: the lead's `owner.sponsoredAccount`; TikTok: the lead's
//!   `advertiser_id`), except the pipeline's own `account_id`, which the
//!   adapters fill in when a delivery names no account;
//! - **Meta**: also the page of every `entry` (`entry[].id`) and of every
//!   change (`changes[].value.page_id`), read from the delivery's envelope
//!   (Graph API Webhooks); Meta's lead rows carry no account, so the page is
//!   what a Meta delivery is checked against.
//!
//! A delivery that names no account at all (a LinkedIn or TikTok lead without
//! owner or advertiser) is not refused: there is nothing to check it against.

use std::collections::BTreeSet;

use crate::config::{canonical_account, WebhookAccounts};
use crate::plugin::RowBatch;

/// The accounts `batch` (and, for Meta, the delivery `body`) names that
/// `allowed` does not list, in their canonical spelling.
pub fn not_allowed(
    allowed: &WebhookAccounts,
    platform: &str,
    body: &[u8],
    batch: &RowBatch,
    pipeline_account: Option<&str>,
) -> Vec<String> {
    let own = pipeline_account.map(canonical_account);
    let mut named: BTreeSet<String> = batch
        .rows
        .account_id
        .iter()
        .filter(|&&i| i != 0)
        .filter_map(|&i| batch.strings.get(i as usize))
        .map(|a| canonical_account(a))
        .filter(|a| !a.is_empty() && Some(*a) != own)
        .map(str::to_owned)
        .collect();
    if platform == "meta" {
        named.extend(meta_pages(body));
    }
    named.into_iter().filter(|a| !allowed.allows(a)).collect()
}

/// The pages a Meta Webhooks delivery names: `entry[].id` and
/// `entry[].changes[].value.page_id` (strings or numbers).
fn meta_pages(body: &[u8]) -> Vec<String> {
    let Ok(delivery) = serde_json::from_slice::<serde_json::Value>(body) else {
        return vec![];
    };
    let id = |v: Option<&serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
            Some(canonical_account(s).to_owned())
        }
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let mut pages = vec![];
    for entry in delivery["entry"].as_array().into_iter().flatten() {
        pages.extend(id(entry.get("id")));
        for change in entry["changes"].as_array().into_iter().flatten() {
            pages.extend(id(change.get("value").and_then(|v| v.get("page_id"))));
        }
    }
    pages
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::bindings::adapter::adpipe::plugin::types::{
        BucketKind, ExtraColumns, RowColumns, RowKind,
    };

    /// Delta rows naming `accounts` (string 0 is the absent entry).
    fn batch(accounts: &[&str]) -> RowBatch {
        let n = accounts.len();
        let mut strings = vec![String::new()];
        strings.extend(accounts.iter().map(|a| (*a).to_owned()));
        RowBatch {
            strings,
            rows: RowColumns {
                kind: vec![RowKind::Delta; n],
                bucket: vec![BucketKind::Daily; n],
                day: vec![20_758; n],
                hour: vec![0; n],
                event_at_ms: vec![0; n],
                account_id: (1..=n as u32).collect(),
                campaign_id: vec![0; n],
                campaign_name: vec![0; n],
                ad_group_id: vec![0; n],
                ad_group_name: vec![0; n],
                ad_id: vec![0; n],
                ad_name: vec![0; n],
                breakdown: vec![0; n],
                currency: vec![0; n],
                dedup_key: vec![0; n],
                impressions: vec![0; n],
                clicks: vec![0; n],
                spend_micros: vec![0; n],
                conversions_micros: vec![0; n],
                conversion_value_micros: vec![0; n],
                observed_at_ms: vec![0; n],
            },
            extras: ExtraColumns {
                row: vec![],
                name: vec![],
                value_micros: vec![],
            },
            notices: vec![],
            next_page: None,
        }
    }

    fn allowed(list: &[&str]) -> WebhookAccounts {
        list.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn rows_are_checked_in_any_spelling_and_the_pipeline_account_is_its_own() {
        let list = allowed(&["urn:li:sponsoredAccount:509", "act_42"]);
        let none: Vec<String> = vec![];
        assert_eq!(
            not_allowed(&list, "linkedin", b"", &batch(&["509", "42"]), None),
            none
        );
        assert_eq!(
            not_allowed(&list, "linkedin", b"", &batch(&["509", "510"]), None),
            vec!["510".to_owned()]
        );
        // The adapter filled in the pipeline's own account: not named by the delivery.
        assert_eq!(
            not_allowed(&list, "tiktok", b"", &batch(&["777"]), Some("777")),
            none
        );
    }

    #[test]
    fn meta_deliveries_are_checked_against_their_pages() {
        let list = allowed(&["111"]);
        let body = br#"{"object":"page","entry":[{"id":"111","changes":[{"field":"leadgen","value":{"page_id":111}}]},
            {"id":"222","changes":[{"field":"leadgen","value":{"page_id":"333"}}]}]}"#;
        assert_eq!(
            not_allowed(&list, "meta", body, &batch(&[]), None),
            vec!["222".to_owned(), "333".to_owned()]
        );
        // Another platform's body is never read as Meta's envelope.
        assert!(not_allowed(&list, "tiktok", body, &batch(&[]), None).is_empty());
    }
}
