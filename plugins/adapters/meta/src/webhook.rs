//! Meta Webhooks deliveries (object `page`) → `leads` deltas.
//!
//! Each `leadgen` change is one lead: +1 of the extra metric `leads` for its
//! ad, deduplicated by `leadgen_id` (Meta retries deliveries). The payload
//! names no ad set, campaign or account: the host places the lead through the
//! ad hierarchy it learned from reports. `adgroup_id` is Meta's legacy name of
//! the *ad* (an "adgroup" was an ad in the old Ads API), never an ad set: it
//! only stands in for a missing `ad_id`. Other change fields are acknowledged
//! as notices.

use adpipe_plugin_sdk::{BatchBuilder, Date, ParseContext, PluginError, Row, RowBatch, RowKind};
use serde::Deserialize;
use serde_json::Value;

use adpipe_plugin_sdk::num::{Num, Text};

#[derive(Deserialize)]
struct Delivery<'a> {
    #[serde(borrow, default)]
    object: Option<Text<'a>>,
    #[serde(borrow, default)]
    entry: Option<Vec<Entry<'a>>>,
}

#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(borrow, default)]
    time: Option<Num<'a>>,
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    #[serde(default)]
    field: String,
    #[serde(default)]
    value: Value,
}

#[derive(Deserialize)]
struct Leadgen<'a> {
    #[serde(borrow, default)]
    leadgen_id: Option<Num<'a>>,
    #[serde(borrow, default)]
    ad_id: Option<Num<'a>>,
    #[serde(borrow, default)]
    adgroup_id: Option<Num<'a>>,
    #[serde(borrow, default)]
    created_time: Option<Num<'a>>,
}

/// Unix seconds, as a JSON number or a numeric string.
fn seconds(value: &Num<'_>, path: impl Fn() -> String) -> Result<i64, PluginError> {
    let micros = value
        .micros()
        .map_err(|e| PluginError::value(path(), format!("{e}: expected unix seconds")))?;
    Ok(micros.div_euclid(1_000_000))
}

/// Parse one delivery.
pub fn parse(body: &[u8], ctx: &ParseContext) -> Result<RowBatch, PluginError> {
    let delivery: Delivery<'_> = serde_json::from_slice(body).map_err(|e| {
        if serde_json::from_slice::<Value>(body).is_ok() {
            PluginError::shape("", format!("not a Meta webhook delivery: {e}"))
        } else {
            PluginError::malformed(format!("not valid JSON: {e}"))
        }
    })?;
    let entries = delivery.entry.ok_or_else(|| {
        PluginError::shape(
            "/entry",
            "missing: expected the `entry` array of a webhook delivery",
        )
    })?;
    let mut batch = BatchBuilder::new();
    let account = ctx
        .account_id
        .as_deref()
        .map(|a| a.trim_start_matches("act_").to_owned());
    for (i, entry) in entries.iter().enumerate() {
        for (j, change) in entry.changes.iter().enumerate() {
            let at = |field: &str| format!("/entry/{i}/changes/{j}/value/{field}");
            if change.field != "leadgen" {
                batch.notice(format!(
                    "ignored change field {:?} on entry {i} (object {:?})",
                    change.field,
                    delivery.object.as_deref().unwrap_or("?")
                ));
                continue;
            }
            let lead: Leadgen<'_> = Leadgen::deserialize(&change.value).map_err(|e| {
                PluginError::shape(format!("/entry/{i}/changes/{j}/value"), e.to_string())
            })?;
            let leadgen_id = lead
                .leadgen_id
                .as_ref()
                .map(|l| l.text())
                .ok_or_else(|| PluginError::shape(at("leadgen_id"), "missing"))?;
            let ad_id = lead.ad_id.as_ref().or(lead.adgroup_id.as_ref());
            let Some(ad_id) = ad_id.map(|a| a.text()) else {
                batch.notice(format!(
                    "lead {leadgen_id} has no ad_id (organic lead): not attributed"
                ));
                continue;
            };
            let created = match (&lead.created_time, &entry.time) {
                (Some(t), _) => seconds(t, || at("created_time"))?,
                (None, Some(t)) => seconds(t, || format!("/entry/{i}/time"))?,
                (None, None) => return Err(PluginError::shape(at("created_time"), "missing")),
            };
            let date =
                Date::from_days_since_epoch(created.div_euclid(86_400)).ok_or_else(|| {
                    PluginError::value(at("created_time"), format!("{created} is out of range"))
                })?;
            let row = Row {
                kind: RowKind::Delta,
                account_id: account.as_deref().map(|a| batch.intern(a)),
                campaign_id: None,
                campaign_name: None,
                // The ad set comes from the hierarchy, never from `adgroup_id`.
                ad_group_id: None,
                ad_group_name: None,
                ad_id: Some(batch.intern(&ad_id)),
                ad_name: None,
                breakdown: None,
                date,
                hour: None,
                // Filed under the lead's day in the pipeline's time zone.
                event_at_ms: Some(created.saturating_mul(1000)),
                currency: None,
                impressions: 0,
                clicks: 0,
                spend_micros: 0,
                conversions_micros: 0,
                conversion_value_micros: 0,
                observed_at_ms: Some(created.saturating_mul(1000)),
                dedup_key: Some(batch.intern(&format!("leadgen:{leadgen_id}"))),
            };
            let index = batch.push(row);
            batch.extra(index, "leads", 1_000_000);
        }
    }
    Ok(batch.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use adpipe_plugin_sdk::ErrorKind;

    #[test]
    fn a_lead_is_one_delta_keyed_by_leadgen_id() {
        let body = br#"{"object":"page","entry":[{"id":"1","time":1762000000,"changes":[
            {"field":"leadgen","value":{"ad_id":"a1","adgroup_id":"s1","leadgen_id":"L1","created_time":1761998400,"page_id":"1","form_id":"f"}},
            {"field":"feed","value":{}}]}]}"#;
        let b = parse(body, &ParseContext::default()).expect("parses");
        assert_eq!(b.rows.len(), 1);
        let r = &b.rows[0];
        assert_eq!(r.kind, RowKind::Delta);
        assert_eq!(b.str(r.dedup_key.expect("key")), "leadgen:L1");
        assert_eq!(r.date, Date::new(2025, 11, 1).expect("date"));
        assert_eq!((r.campaign_id, r.account_id), (None, None));
        assert_eq!(
            b.extras_of(0).collect::<Vec<_>>(),
            vec![("leads", 1_000_000)]
        );
        assert_eq!(b.notices.len(), 1);
        assert!(b.notices[0].contains("feed"));
    }

    #[test]
    fn string_times_and_numeric_ids_and_context_account() {
        let body = br#"{"object":"page","entry":[{"id":1,"time":"1762000000","changes":[
            {"field":"leadgen","value":{"ad_id":23851,"adgroup_id":23850,"leadgen_id":1950,"created_time":"1761998400"}},
            {"field":"leadgen","value":{"ad_id":"23851","leadgen_id":"1951"}}]}]}"#;
        let ctx = ParseContext {
            account_id: Some("act_42".into()),
            ..ParseContext::default()
        };
        let b = parse(body, &ctx).expect("parses");
        assert_eq!(b.rows.len(), 2);
        assert_eq!(b.str(b.rows[0].ad_id.expect("ad")), "23851");
        assert_eq!(b.rows[0].ad_group_id, None, "adgroup_id is not an ad set");
        assert_eq!(b.str(b.rows[0].dedup_key.expect("key")), "leadgen:1950");
        assert_eq!(b.str(b.rows[0].account_id.expect("account")), "42");
        assert_eq!(b.rows[0].observed_at_ms, Some(1_761_998_400_000));
        // Without created_time the entry's time stands in.
        assert_eq!(b.rows[1].observed_at_ms, Some(1_762_000_000_000));
        let e = parse(
            br#"{"entry":[{"changes":[{"field":"leadgen","value":{"ad_id":"1","leadgen_id":"2","created_time":"soon"}}]}]}"#,
            &ParseContext::default(),
        )
        .expect_err("bad time");
        assert_eq!(
            (e.kind, e.path.as_str()),
            (
                ErrorKind::InvalidValue,
                "/entry/0/changes/0/value/created_time"
            )
        );
    }

    #[test]
    fn rejections_name_their_path() {
        let e = parse(br#"{"object":"page"}"#, &ParseContext::default()).expect_err("no entry");
        assert_eq!(
            (e.kind, e.path.as_str()),
            (ErrorKind::InvalidShape, "/entry")
        );
        let e = parse(
            br#"{"entry":[{"changes":[{"field":"leadgen","value":{"ad_id":"1"}}]}]}"#,
            &ParseContext::default(),
        )
        .expect_err("no leadgen id");
        assert_eq!(e.path, "/entry/0/changes/0/value/leadgen_id");
        let e = parse(b"{", &ParseContext::default()).expect_err("malformed");
        assert_eq!(e.kind, ErrorKind::Malformed);
    }
}
