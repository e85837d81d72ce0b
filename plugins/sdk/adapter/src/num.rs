//! Borrowing payload types: deserialize a page into structs of these and
//! nothing is copied out of the body but what ends up in the row batch.
//!
//! - [`Num`]: platforms send numbers as JSON strings (`"12.34"`, protobuf
//!   int64) and as JSON numbers; `Num` takes either without allocating and
//!   turns into exact micros or counts.
//! - [`Text`]: a string, borrowed unless it has escapes.
//! - [`Fields`]: an object whose keys are data (TikTok's `metrics`).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A number or numeric string as it appeared in the payload.
#[derive(Clone, Debug, PartialEq)]
pub enum Num<'a> {
    Text(Cow<'a, str>),
    Int(i64),
    UInt(u64),
    Float(f64),
}

impl Num<'_> {
    /// Exact millionths (see [`crate::money::parse_micros`]).
    pub fn micros(&self) -> Result<i64, crate::money::DecimalError> {
        crate::money::parse_micros(&self.text())
    }

    /// An amount the platform already sends in micros ([`crate::money::parse_whole_micros`]).
    pub fn whole_micros(&self) -> Result<i64, crate::money::DecimalError> {
        crate::money::parse_whole_micros(&self.text())
    }

    /// A whole, non-negative count.
    pub fn count(&self) -> Result<u64, crate::money::DecimalError> {
        crate::money::parse_count(&self.text())
    }

    /// As text, for ids (`123` and `"123"` are the same id).
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Num::Text(t) => Cow::Borrowed(t.as_ref()),
            Num::Int(i) => Cow::Owned(i.to_string()),
            Num::UInt(u) => Cow::Owned(u.to_string()),
            Num::Float(f) => Cow::Owned(f.to_string()),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Num<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumVisitor;
        impl<'de> Visitor<'de> for NumVisitor {
            type Value = Num<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a numeric string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Num<'de>, E> {
                Ok(Num::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Num<'de>, E> {
                Ok(Num::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Num<'de>, E> {
                Ok(Num::Text(Cow::Owned(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num<'de>, E> {
                Ok(Num::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num<'de>, E> {
                Ok(Num::UInt(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num<'de>, E> {
                Ok(Num::Float(v))
            }
        }
        deserializer.deserialize_any(NumVisitor)
    }
}

/// An optional number read by `read` (absent = 0); a bad value is
/// rejected naming `path`.
fn optional_at<'a, T: Default>(
    value: Option<&Num<'a>>,
    path: impl FnOnce() -> String,
    read: impl FnOnce(&Num<'a>) -> Result<T, crate::money::DecimalError>,
) -> Result<T, crate::PluginError> {
    match value {
        None => Ok(T::default()),
        Some(n) => read(n).map_err(|e| crate::PluginError::value(path(), e.to_string())),
    }
}

/// An optional count (absent = 0); a bad value is rejected naming `path`.
pub fn count_at(
    value: Option<&Num<'_>>,
    path: impl FnOnce() -> String,
) -> Result<u64, crate::PluginError> {
    optional_at(value, path, Num::count)
}

/// An optional amount in millionths (absent = 0); a bad value is rejected naming `path`.
pub fn micros_at(
    value: Option<&Num<'_>>,
    path: impl FnOnce() -> String,
) -> Result<i64, crate::PluginError> {
    optional_at(value, path, Num::micros)
}

/// An optional amount already in micros (absent = 0), e.g. Google Ads
/// `costMicros`; a bad value is rejected naming `path`.
pub fn whole_micros_at(
    value: Option<&Num<'_>>,
    path: impl FnOnce() -> String,
) -> Result<i64, crate::PluginError> {
    optional_at(value, path, Num::whole_micros)
}

/// A string from the payload: borrowed when it has no escapes, owned when
/// it has. Unlike `Cow<str>` with `#[serde(borrow)]`, which borrows only as
/// a bare field, `Text` borrows inside `Option`, `Vec` and maps too: with
/// `Option<Cow<str>>` every present string was copied (measured: a fifth of
/// the Meta parser's time went to malloc and free). Derefs to `str`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Text<'a>(pub Cow<'a, str>);

impl Text<'_> {
    /// The text as an owned `String`.
    pub fn into_owned(self) -> String {
        self.0.into_owned()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Text<'_> {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Text<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<Text<'_>> for &str {
    fn eq(&self, other: &Text<'_>) -> bool {
        *self == other.0
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(s: &'a str) -> Self {
        Text(Cow::Borrowed(s))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// A JSON object whose keys are not known in advance (TikTok's `metrics`
/// and `dimensions`), kept as a list in document order. A row's object has a
/// dozen keys or so, where a scan beats hashing every key, and no key set a
/// payload sends can make a lookup slower than linear. A repeated key
/// answers its last value, as a map would.
#[derive(Clone, Debug, PartialEq)]
pub struct Fields<'a, V>(pub Vec<(Text<'a>, V)>);

impl<V> Default for Fields<'_, V> {
    fn default() -> Self {
        Fields(Vec::new())
    }
}

impl<'a, V> Fields<'a, V> {
    /// The value of `key`, if the object has it.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Keys and values in document order (a repeated key appears twice).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> + '_ {
        self.0.iter().map(|(k, v)| (k.as_ref(), v))
    }
}

impl<'de: 'a, 'a, V: Deserialize<'de>> Deserialize<'de> for Fields<'a, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor<'a, V>(std::marker::PhantomData<(&'a (), V)>);
        impl<'de: 'a, 'a, V: Deserialize<'de>> Visitor<'de> for FieldsVisitor<'a, V> {
            type Value = Fields<'a, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some((key, value)) = map.next_entry::<Text<'a>, V>()? {
                    fields.push((key, value));
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Row<'a> {
        #[serde(borrow, default)]
        name: Option<Text<'a>>,
        #[serde(borrow, default)]
        tags: Vec<Text<'a>>,
        #[serde(borrow, default)]
        metrics: Option<Fields<'a, Num<'a>>>,
    }

    #[test]
    fn text_borrows_inside_options_and_collections_and_copies_only_escapes() {
        let body = r#"{"name": "Prospecting", "tags": ["a", "b\"c"],
                       "metrics": {"spend": "1.5", "clicks": 3, "spend": "2.25"}}"#;
        let row: Row<'_> = serde_json::from_str(body).expect("parse");
        let name = row.name.expect("name");
        assert!(matches!(name.0, Cow::Borrowed("Prospecting")));
        assert!(matches!(row.tags[0].0, Cow::Borrowed("a")));
        assert!(matches!(&row.tags[1].0, Cow::Owned(s) if s == "b\"c"));
        let metrics = row.metrics.expect("metrics");
        // A repeated key answers its last value, as a map would.
        assert_eq!(metrics.get("spend").map(Num::micros), Some(Ok(2_250_000)));
        assert_eq!(metrics.get("clicks").map(Num::count), Some(Ok(3)));
        assert_eq!(metrics.get("impressions"), None);
        assert_eq!(metrics.iter().count(), 3);
        assert_eq!(name, "Prospecting");
        assert_eq!("Prospecting", name);
    }
}
