//! The ad hierarchy (ad → ad group → campaign → account, currency): learned
//! from snapshots when they are written ([`collect`]), used when deltas are
//! read ([`place`]), so a lead that names only its ad counts under its
//! campaign once any snapshot has named that ad — even if the lead came first.
//! Both stores use this code; they only store and return the rows.

use std::collections::{BTreeSet, HashMap};

use super::FactFilter;
use crate::insights::Fact;
use crate::row::Row;

/// `(tenant, platform, level, id)` of an entity.
pub type EntityKey<'a> = (&'a str, &'a str, &'static str, &'a str);

/// What the hierarchy knows of one campaign, ad group or ad.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entity {
    pub account_id: String,
    pub campaign_id: String,
    /// Set for ads.
    pub ad_group_id: Option<String>,
    /// The entity's display name at its level (campaign, ad group or ad), when
    /// a row named it; stored in the `campaign_name` column of `entities`.
    pub name: Option<String>,
    pub currency: String,
}

/// An [`Entity`] as a batch of rows teaches it, borrowed from the rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Learned<'a> {
    pub account_id: &'a str,
    pub campaign_id: &'a str,
    /// Set for ads.
    pub ad_group_id: Option<&'a str>,
    /// The display name at the entity's level, when a row named it.
    pub name: Option<&'a str>,
    pub currency: &'a str,
}

/// Learn what `row` (a snapshot with campaign and currency) says of its
/// campaign, ad group and ad (nothing is copied: a batch borrows its rows).
pub fn collect<'a>(
    entities: &mut foldhash::HashMap<EntityKey<'a>, Learned<'a>>,
    tenant: &'a str,
    row: &'a Row,
) {
    let (Some(campaign_id), Some(currency)) = (&row.campaign_id, &row.currency) else {
        return;
    };
    let entity = |ad_group_id: Option<&'a str>, name: Option<&'a str>| Learned {
        account_id: &row.account_id,
        campaign_id,
        ad_group_id,
        name,
        currency,
    };
    let platform = row.platform.as_str();
    let campaign = entities
        .entry((tenant, platform, "campaign", campaign_id))
        .or_insert_with(|| entity(None, None));
    if let Some(name) = &row.campaign_name {
        campaign.name = Some(name);
    }
    if let Some(ad_group) = &row.ad_group_id {
        entities.insert(
            (tenant, platform, "ad_group", ad_group),
            entity(None, row.ad_group_name.as_deref()),
        );
    }
    if let Some(ad) = &row.ad_id {
        entities.insert(
            (tenant, platform, "ad", ad),
            entity(row.ad_group_id.as_deref(), row.ad_name.as_deref()),
        );
    }
}

/// An ad or ad group as a store returns it for placing deltas.
#[derive(Clone, Debug)]
pub struct Known {
    pub platform: String,
    /// `ad` or `ad_group`.
    pub level: String,
    pub id: String,
    pub entity: Entity,
}

/// A delta as stored: it may name only its ad (or ad group).
#[derive(Clone, Debug)]
pub struct StoredDelta {
    pub account_id: Option<String>,
    pub campaign_id: Option<String>,
    pub currency: Option<String>,
    /// Everything else; its account, campaign and currency are set by [`place`].
    pub fact: Fact,
}

/// The ad ids `deltas` name (what [`place`] looks up first).
pub fn ads_named(deltas: &[StoredDelta]) -> Vec<String> {
    let ids: BTreeSet<&String> = deltas
        .iter()
        .filter_map(|d| d.fact.ad_id.as_ref())
        .collect();
    ids.into_iter().cloned().collect()
}

/// The ad group ids `deltas` name, or that their known `ads` name.
pub fn ad_groups_named(deltas: &[StoredDelta], ads: &[Known]) -> Vec<String> {
    let ids: BTreeSet<&String> = deltas
        .iter()
        .filter_map(|d| d.fact.ad_group_id.as_ref())
        .chain(ads.iter().filter_map(|a| a.entity.ad_group_id.as_ref()))
        .collect();
    ids.into_iter().cloned().collect()
}

/// Place `deltas` through the hierarchy `known` and keep those `filter`
/// selects; deltas that cannot be placed yet (their ad is not known) are
/// left out until a snapshot names their ad.
pub fn place(deltas: Vec<StoredDelta>, known: &[Known], filter: &FactFilter) -> Vec<Fact> {
    let index: HashMap<(&str, &str, &str), &Entity> = known
        .iter()
        .map(|k| {
            (
                (k.platform.as_str(), k.level.as_str(), k.id.as_str()),
                &k.entity,
            )
        })
        .collect();
    let mut out = Vec::with_capacity(deltas.len());
    for delta in deltas {
        let mut fact = delta.fact;
        let platform = fact.platform.as_str();
        let ad = fact
            .ad_id
            .as_deref()
            .and_then(|id| index.get(&(platform, "ad", id)).copied());
        let ad_group_id = fact
            .ad_group_id
            .clone()
            .or_else(|| ad.and_then(|a| a.ad_group_id.clone()));
        let group = ad_group_id
            .as_deref()
            .and_then(|id| index.get(&(platform, "ad_group", id)).copied());
        let pick = |own: Option<String>, field: fn(&Entity) -> &String| {
            own.filter(|v| !v.is_empty())
                .or_else(|| ad.map(|e| field(e).clone()))
                .or_else(|| group.map(|e| field(e).clone()))
                .filter(|v| !v.is_empty())
        };
        let (Some(account_id), Some(campaign_id), Some(currency)) = (
            pick(delta.account_id, |e| &e.account_id),
            pick(delta.campaign_id, |e| &e.campaign_id),
            pick(delta.currency, |e| &e.currency),
        ) else {
            continue;
        };
        fact.account_id = account_id;
        fact.campaign_id = campaign_id;
        fact.currency = currency;
        fact.ad_group_id = ad_group_id;
        if filter.selects(&fact) {
            out.push(fact);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn fact(ad_id: &str) -> Fact {
        Fact {
            platform: "meta".into(),
            account_id: String::new(),
            campaign_id: String::new(),
            ad_group_id: None,
            ad_id: Some(ad_id.into()),
            date: 20_000,
            hour: None,
            currency: String::new(),
            impressions: 0,
            clicks: 0,
            spend_micros: 0,
            conversions_micros: 0,
            conversion_value_micros: 0,
            extras: BTreeMap::from([("leads".to_owned(), 1_000_000)]),
            breakdown: String::new(),
        }
    }

    #[test]
    fn a_delta_naming_its_ad_is_placed_once_the_ad_is_known() {
        let lead = StoredDelta {
            account_id: None,
            campaign_id: None,
            currency: None,
            fact: fact("a1"),
        };
        let filter = FactFilter::default();
        assert!(place(vec![lead.clone()], &[], &filter).is_empty());
        let ad = Known {
            platform: "meta".into(),
            level: "ad".into(),
            id: "a1".into(),
            entity: Entity {
                account_id: "act".into(),
                campaign_id: "c1".into(),
                ad_group_id: Some("g1".into()),
                name: None,
                currency: "EUR".into(),
            },
        };
        let placed = place(vec![lead.clone()], std::slice::from_ref(&ad), &filter);
        assert_eq!(placed.len(), 1);
        assert_eq!(
            (
                placed[0].campaign_id.as_str(),
                placed[0].ad_group_id.as_deref()
            ),
            ("c1", Some("g1"))
        );
        assert_eq!(
            (placed[0].account_id.as_str(), placed[0].currency.as_str()),
            ("act", "EUR")
        );
        let other_campaign = FactFilter {
            campaign_ids: Some(vec!["c2".into()]),
            ..FactFilter::default()
        };
        assert!(place(
            vec![lead.clone()],
            std::slice::from_ref(&ad),
            &other_campaign
        )
        .is_empty());
        // What a store is asked for: the ads the deltas name, then their ad groups.
        assert_eq!(
            ads_named(&[lead.clone(), lead.clone()]),
            vec!["a1".to_owned()]
        );
        assert_eq!(ad_groups_named(&[lead], &[ad]), vec!["g1".to_owned()]);
    }
}
