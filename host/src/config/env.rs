//! `ADPIPE_<SECTION>__<KEY>` overrides (e.g. `ADPIPE_BUS__KIND=kafka` sets
//! `bus.kind`), and `ADPIPE_JWT_SECRET` for `auth.jwt_secret` when
//! `ADPIPE_AUTH__JWT_SECRET` is unset. Read from a given list of variables:
//! the process environment when adpipe runs, an explicit list in tests. The
//! keys and values are read as figment's `Env::prefixed("ADPIPE_").split("__")`
//! reads them (prefix in any case, keys lowercased, values as TOML-ish scalars).

use figment::value::{Dict, Map, Tag, Value};
use figment::{Error, Metadata, Profile, Provider};

const PREFIX: &str = "ADPIPE_";

/// The `ADPIPE_…` variables among some environment variables.
pub(super) struct EnvOverrides {
    /// `(dotted.key, value)` in the order given.
    overrides: Vec<(String, Value)>,
}

impl EnvOverrides {
    pub(super) fn new<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let vars: Vec<(K, V)> = vars.into_iter().collect();
        let mut overrides: Vec<(String, Value)> = vars
            .iter()
            .filter_map(|(key, value)| {
                let key = override_key(key.as_ref())?;
                let value = value
                    .as_ref()
                    .parse()
                    .unwrap_or_else(|never| match never {});
                Some((key, value))
            })
            .collect();
        let named = |name: &str| vars.iter().find(|(k, _)| k.as_ref() == name);
        if let Some((_, secret)) = named("ADPIPE_JWT_SECRET") {
            if named("ADPIPE_AUTH__JWT_SECRET").is_none() {
                overrides.push(("auth.jwt_secret".into(), Value::from(secret.as_ref())));
            }
        }
        EnvOverrides { overrides }
    }
}

/// `ADPIPE_BUS__KIND` → `bus.kind`; `None` for other variables.
fn override_key(var: &str) -> Option<String> {
    let var = var.trim();
    let rest = var
        .get(..PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(PREFIX))
        .map(|_| &var[PREFIX.len()..])?;
    if !rest.contains("__") {
        return None;
    }
    let key = rest.replace("__", ".");
    let key = key.trim();
    if key.split('.').any(str::is_empty) {
        return None;
    }
    Some(key.to_ascii_lowercase())
}

/// Set `value` at the dotted `key`, making tables on the way.
fn insert(dict: &mut Dict, key: &str, value: Value) {
    match key.split_once('.') {
        None => {
            dict.insert(key.to_owned(), value);
        }
        Some((first, rest)) => {
            let entry = dict
                .entry(first.to_owned())
                .or_insert_with(|| Value::Dict(Tag::Default, Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::Dict(Tag::Default, Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

impl Provider for EnvOverrides {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("`{PREFIX}` environment variable(s)")).interpolater(
            |_: &Profile, keys: &[&str]| {
                let keys: Vec<_> = keys.iter().map(|k| k.to_ascii_uppercase()).collect();
                keys.join("__")
            },
        )
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let mut dict = Dict::new();
        for (key, value) in &self.overrides {
            insert(&mut dict, key, value.clone());
        }
        Ok(Profile::Default.collect(dict))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sectioned_adpipe_variables_become_keys() {
        assert_eq!(
            override_key("ADPIPE_BUS__KIND").as_deref(),
            Some("bus.kind")
        );
        assert_eq!(
            override_key("adpipe_api__rate_limits__enabled").as_deref(),
            Some("api.rate_limits.enabled")
        );
        assert_eq!(override_key("ADPIPE_LOG"), None);
        assert_eq!(override_key("ADPIPE_JWT_SECRET"), None);
        assert_eq!(override_key("ADPIPE_BUS____KIND"), None);
        assert_eq!(override_key("OTHER_BUS__KIND"), None);
    }
}
