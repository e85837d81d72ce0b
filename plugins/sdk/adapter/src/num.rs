//! Platforms send numbers as JSON strings (`"12.34"`, protobuf int64) and as
//! JSON numbers. [`Num`] takes either without allocating for borrowed strings,
//! and turns into exact micros or counts.

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

/// An optional count (absent = 0); a bad value is rejected naming `path`.
pub fn count_at(
    value: Option<&Num<'_>>,
    path: impl FnOnce() -> String,
) -> Result<u64, crate::PluginError> {
    match value {
        None => Ok(0),
        Some(n) => n
            .count()
            .map_err(|e| crate::PluginError::value(path(), e.to_string())),
    }
}

/// An optional amount in millionths (absent = 0); a bad value is rejected naming `path`.
pub fn micros_at(
    value: Option<&Num<'_>>,
    path: impl FnOnce() -> String,
) -> Result<i64, crate::PluginError> {
    match value {
        None => Ok(0),
        Some(n) => n
            .micros()
            .map_err(|e| crate::PluginError::value(path(), e.to_string())),
    }
}

/// A string that may arrive escaped (owned) or plain (borrowed).
pub type Text<'a> = Cow<'a, str>;
