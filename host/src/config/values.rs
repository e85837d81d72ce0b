//! Typed values several sections share, parsed once while the configuration
//! is read: spans of time written `3600`, `90s`, `15m`, `1h` or `7d`. A value
//! that does not parse is reported like any other mistake, at its key and
//! with a hint (see [`invalid`]).

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

/// Separates a parse error's message from its hint in the text serde carries
/// (split again when the error becomes a [`super::ConfigIssue`]).
pub(super) const HINT_MARK: &str = "\n    hint: ";

/// A value that does not parse, with a hint on what to write instead.
pub(super) fn invalid<E: de::Error>(message: impl fmt::Display, hint: &str) -> E {
    E::custom(format_args!("{message}{HINT_MARK}{hint}"))
}

/// Seconds in a span written `3600`, `90s`, `15m`, `1h` or `7d` (more than zero).
pub fn parse_seconds(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "s"),
    };
    let n: u64 = number.parse().ok()?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(factor).filter(|&s| s > 0)
}

/// A span in the largest unit that writes it exactly: `30d`, `2h`, `90s`.
pub fn span_text(span: Duration) -> String {
    let seconds = span.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if seconds > 0 && seconds.is_multiple_of(size) {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

/// A span as TOML or the environment writes it: text (`15m`) or whole
/// seconds (`900`), at least `min_seconds`; otherwise "`text` is not `what`".
fn span<'de, D: Deserializer<'de>>(
    deserializer: D,
    what: &str,
    hint: &str,
    min_seconds: u64,
) -> Result<Duration, D::Error> {
    struct Text;
    impl Visitor<'_> for Text {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a span such as 90s, 15m, 1h or 7d")
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<String, E> {
            Ok(text.to_owned())
        }
        fn visit_u64<E: de::Error>(self, seconds: u64) -> Result<String, E> {
            Ok(seconds.to_string())
        }
        fn visit_i64<E: de::Error>(self, seconds: i64) -> Result<String, E> {
            Ok(seconds.to_string())
        }
    }
    let text = deserializer.deserialize_any(Text)?;
    match parse_seconds(&text) {
        Some(seconds) if seconds >= min_seconds => Ok(Duration::from_secs(seconds)),
        _ => Err(invalid(format_args!("`{text}` is not {what}"), hint)),
    }
}

/// `auth.max_token_ttl`: a token lifetime.
pub(super) mod lifetime {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        super::span(
            deserializer,
            "a lifetime",
            "use e.g. 12h, 7d or 30d (the default)",
            1,
        )
    }

    pub fn serialize<S: Serializer>(span: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::span_text(*span))
    }
}

/// `pipelines.pull.every`: an interval of at least a minute, or unset.
pub(super) mod interval {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        super::span(
            deserializer,
            "an interval of at least a minute",
            "use e.g. 30m, 1h or 1d",
            60,
        )
        .map(Some)
    }

    pub fn serialize<S: Serializer>(
        span: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match span {
            Some(span) => serializer.serialize_some(&super::span_text(*span)),
            None => serializer.serialize_none(),
        }
    }
}

/// `pipelines.timezone`: an IANA time zone name (`America/New_York`), UTC by default.
pub(super) mod timezone {
    use chrono_tz::Tz;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Tz, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse::<Tz>().map_err(|_| {
            super::invalid(
                format_args!("`{text}` is not an IANA time zone"),
                "use the zone the ad account reports in, e.g. America/New_York or Europe/Berlin",
            )
        })
    }

    pub fn serialize<S: Serializer>(tz: &Tz, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(tz.name())
    }

    pub fn utc() -> Tz {
        Tz::UTC
    }
}

/// `retention.prune_every`: an interval of at least a minute.
pub(super) mod prune_interval {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        super::span(
            deserializer,
            "an interval of at least a minute",
            "use e.g. 15m or 1h (the default)",
            60,
        )
    }

    pub fn serialize<S: Serializer>(span: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::span_text(*span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_and_print_in_the_same_syntax() {
        assert_eq!(parse_seconds("1h"), Some(3600));
        assert_eq!(parse_seconds("15m"), Some(900));
        assert_eq!(parse_seconds("30"), Some(30));
        assert_eq!(parse_seconds("0"), None);
        assert_eq!(parse_seconds("1y"), None);
        for text in ["30d", "2h", "15m", "90s"] {
            let seconds = parse_seconds(text).expect("parses");
            assert_eq!(span_text(Duration::from_secs(seconds)), text);
        }
        assert_eq!(span_text(Duration::from_secs(3600)), "1h");
    }
}
