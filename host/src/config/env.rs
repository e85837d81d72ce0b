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
    use super::super::tests::load;
    use super::super::{BusKind, MetadataUrl, ServeRun, StoreKind};
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn the_pinned_engine_keys_come_from_the_environment() {
        let file = "[bus]\nkind = \"embedded\"\n[store]\nkind = \"embedded\"\n";
        let config = load(
            file,
            &[
                ("ADPIPE_BUS__KIND", "kafka"),
                ("ADPIPE_BUS__BROKERS", "kafka-0:9092,kafka-1:9092"),
                ("ADPIPE_STORE__KIND", "clickhouse"),
                ("ADPIPE_STORE__URL", "http://clickhouse:8123"),
                ("ADPIPE_METADATA__URL", "postgres://adpipe@db:5432/adpipe"),
                ("ADPIPE_CACHE__URL", "redis://cache:6379"),
                ("ADPIPE_AUTH__JWT_SECRET", SECRET),
                ("ADPIPE_SERVER__RUN", "consumer"),
                ("ADPIPE_LOG", "debug"),
                ("PATH", "/usr/bin"),
            ],
        )
        .expect("valid");
        assert_eq!(config.bus.kind, BusKind::Kafka);
        assert_eq!(
            config.bus.brokers.as_deref(),
            Some("kafka-0:9092,kafka-1:9092")
        );
        assert_eq!(config.store.kind, StoreKind::Clickhouse);
        assert_eq!(config.store.url.as_deref(), Some("http://clickhouse:8123"));
        assert_eq!(
            config.metadata.url,
            Some(MetadataUrl::Postgres(
                "postgres://adpipe@db:5432/adpipe".into()
            ))
        );
        assert_eq!(config.cache.url.as_deref(), Some("redis://cache:6379"));
        assert_eq!(config.auth.jwt_secret.as_deref(), Some(SECRET));
        assert_eq!(config.server.run, ServeRun::Consumer);
    }

    #[test]
    fn the_short_jwt_secret_variable_is_used_unless_the_sectioned_one_is_set() {
        let config = load("", &[("ADPIPE_JWT_SECRET", SECRET)]).expect("valid");
        assert_eq!(config.auth.jwt_secret.as_deref(), Some(SECRET));
        let other = "fedcba9876543210fedcba9876543210";
        let config = load(
            "",
            &[
                ("ADPIPE_JWT_SECRET", SECRET),
                ("ADPIPE_AUTH__JWT_SECRET", other),
            ],
        )
        .expect("valid");
        assert_eq!(config.auth.jwt_secret.as_deref(), Some(other));
        let text = load("", &[("ADPIPE_JWT_SECRET", "short")])
            .expect_err("too short")
            .to_string();
        assert!(
            text.contains("auth.jwt_secret: the JWT secret") && text.contains("ADPIPE_JWT_SECRET"),
            "{text}"
        );
        assert!(text.contains("at least 32"), "{text}");
    }

    #[test]
    fn without_overrides_the_file_and_defaults_hold() {
        let config = load("[bus]\ntopic = \"rows\"\n", &[]).expect("valid");
        assert_eq!(config.bus.kind, BusKind::Embedded);
        assert_eq!(config.bus.topic, "rows");
        assert_eq!(config.auth.jwt_secret, None);
        assert_eq!(config.metadata.url, None);
    }

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
