//! A pipeline's options checked against what its adapter declares (WIT 0.2.0
//! `option-spec`), defaults filled in, and the platform API version it will
//! speak, with how close that version is to its sunset.
//!
//! Adapters built against 0.1.0 declare nothing: their options pass through
//! unchecked, as before.

use chrono::NaiveDate;

use super::{AdapterInfo, OptionType};

/// Days before a sunset from which adpipe warns.
pub const SUNSET_WARNING_DAYS: i64 = 60;

/// The option naming the platform API version.
pub const API_VERSION: &str = "api_version";

/// Options the host itself passes to parse calls (never set by a pipeline).
const HOST_OPTIONS: &[&str] = &["request.url"];

/// One problem with a pipeline's options.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("option `{option}`: {message}")]
pub struct OptionIssue {
    pub option: String,
    pub message: String,
}

/// A pipeline's options as its plugin will receive them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Declared options as given, then declared defaults and `api_version`.
    pub options: Vec<(String, String)>,
    /// Options the adapter does not declare (a misspelling, most likely):
    /// `adpipe check` refuses them, `serve` warns and leaves them out.
    pub unknown: Vec<OptionIssue>,
}

/// The platform API version a pipeline will speak and how long it has left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiVersionUse {
    pub version: String,
    pub sunset: Option<NaiveDate>,
    /// Days from `today` to the sunset (negative once past); `None` when unannounced.
    pub days_left: Option<i64>,
}

impl ApiVersionUse {
    /// `ok`, `warning` (sunset within [`SUNSET_WARNING_DAYS`]) or `expired`.
    pub fn status(&self) -> &'static str {
        match self.days_left {
            Some(d) if d <= 0 => "expired",
            Some(d) if d <= SUNSET_WARNING_DAYS => "warning",
            _ => "ok",
        }
    }

    /// A sentence for logs, `adpipe check` and pull errors, when not `ok`.
    pub fn advice(&self, platform: &str, newest: &str) -> Option<String> {
        let sunset = self.sunset?;
        match self.status() {
            "expired" => Some(format!(
                "{platform} API version {} reached its sunset on {sunset}: requests fail; \
                 set api_version = \"{newest}\" (or remove it to use the adapter's newest)",
                self.version
            )),
            "warning" => Some(format!(
                "{platform} API version {} sunsets on {sunset} ({} days): move to api_version = \"{newest}\"",
                self.version,
                self.days_left.unwrap_or_default()
            )),
            _ => None,
        }
    }
}

/// The options a plugin receives: the pipeline's, checked against the
/// declaration, with declared defaults and `api_version` filled in. A
/// declared option with a wrong value, a missing required one or a
/// host-set name is an error; an undeclared name is set aside in
/// [`Resolved::unknown`] for the caller to refuse or warn about.
pub fn resolve(
    info: &AdapterInfo,
    given: &[(String, String)],
) -> Result<Resolved, Vec<OptionIssue>> {
    let declares = !info.options.is_empty() || !info.api_versions.is_empty();
    if !declares {
        return Ok(Resolved {
            options: given.to_vec(),
            unknown: Vec::new(),
        });
    }
    let mut issues = Vec::new();
    let mut unknown = Vec::new();
    let mut kept = Vec::new();
    for (name, value) in given {
        if name == API_VERSION {
            if !info.api_versions.iter().any(|v| &v.name == value) {
                issues.push(OptionIssue {
                    option: name.clone(),
                    message: format!(
                        "`{value}` is not a {} API version this adapter speaks ({})",
                        info.platform,
                        info.api_versions
                            .iter()
                            .map(|v| v.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
            kept.push((name.clone(), value.clone()));
            continue;
        }
        match info.options.iter().find(|o| &o.name == name) {
            Some(spec) => {
                if let Err(message) = check_type(spec.type_, value) {
                    issues.push(OptionIssue {
                        option: name.clone(),
                        message,
                    });
                }
                kept.push((name.clone(), value.clone()));
            }
            None if HOST_OPTIONS.contains(&name.as_str()) => issues.push(OptionIssue {
                option: name.clone(),
                message: "is set by the host, not by a pipeline".into(),
            }),
            None => {
                let mut known: Vec<&str> = info.options.iter().map(|o| o.name.as_str()).collect();
                if !info.api_versions.is_empty() {
                    known.push(API_VERSION);
                }
                let hint = match closest(name, &known) {
                    Some(near) => format!("did you mean `{near}`? "),
                    None => String::new(),
                };
                unknown.push(OptionIssue {
                    option: name.clone(),
                    message: format!(
                        "the {} adapter has no such option; {hint}it takes: {}",
                        info.name,
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    ),
                });
            }
        }
    }
    for spec in &info.options {
        if spec.required && !given.iter().any(|(k, _)| k == &spec.name) && spec.default.is_none() {
            issues.push(OptionIssue {
                option: spec.name.clone(),
                message: format!("is required: {}", spec.help),
            });
        }
    }
    if !issues.is_empty() {
        return Err(issues);
    }
    let mut resolved = kept;
    for spec in &info.options {
        if let (Some(default), false) = (&spec.default, given.iter().any(|(k, _)| k == &spec.name))
        {
            resolved.push((spec.name.clone(), default.clone()));
        }
    }
    if let (Some(newest), false) = (
        info.api_versions.first(),
        given.iter().any(|(k, _)| k == API_VERSION),
    ) {
        resolved.push((API_VERSION.to_owned(), newest.name.clone()));
    }
    Ok(Resolved {
        options: resolved,
        unknown,
    })
}

/// The API version `options` (as resolved) select, and its sunset as of `today`.
pub fn api_version(
    info: &AdapterInfo,
    options: &[(String, String)],
    today: NaiveDate,
) -> Option<ApiVersionUse> {
    let name = options
        .iter()
        .find(|(k, _)| k == API_VERSION)
        .map(|(_, v)| v.as_str())?;
    let declared = info.api_versions.iter().find(|v| v.name == name)?;
    let sunset = declared.sunset.and_then(|d| {
        NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))
    });
    Some(ApiVersionUse {
        version: name.to_owned(),
        sunset,
        days_left: sunset.map(|s| s.signed_duration_since(today).num_days()),
    })
}

fn check_type(kind: OptionType, value: &str) -> Result<(), String> {
    let ok = match kind {
        OptionType::String | OptionType::List => true,
        OptionType::Integer => value.trim().parse::<i64>().is_ok(),
        OptionType::Decimal => value.trim().parse::<f64>().is_ok_and(f64::is_finite),
        OptionType::Boolean => matches!(value.trim(), "true" | "false"),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{value}` is not {}",
            match kind {
                OptionType::Integer => "an integer",
                OptionType::Decimal => "a decimal number",
                OptionType::Boolean => "true or false",
                OptionType::String | OptionType::List => "text",
            }
        ))
    }
}

/// The known name within two edits of `name`, if any.
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::levenshtein(name, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{ApiVersion, Date, OptionSpec, SignatureScheme};

    fn info() -> AdapterInfo {
        AdapterInfo {
            name: "demo".into(),
            version: "1.0.0".into(),
            platform: "demo".into(),
            signature: SignatureScheme::None,
            allowed_hosts: vec![],
            default_lookback_days: 7,
            options: vec![
                OptionSpec {
                    name: "conversion_column".into(),
                    type_: OptionType::String,
                    default: Some("purchases".into()),
                    required: false,
                    help: "which column counts".into(),
                },
                OptionSpec {
                    name: "page_size".into(),
                    type_: OptionType::Integer,
                    default: None,
                    required: false,
                    help: "rows per page".into(),
                },
            ],
            api_versions: vec![
                ApiVersion {
                    name: "v3".into(),
                    sunset: None,
                },
                ApiVersion {
                    name: "v2".into(),
                    sunset: Some(Date {
                        year: 2027,
                        month: 1,
                        day: 15,
                    }),
                },
            ],
            extra_metrics: vec![],
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_and_the_newest_version_are_filled_in() {
        let resolved = resolve(&info(), &pairs(&[("page_size", "50")])).expect("valid");
        assert!(resolved.unknown.is_empty());
        assert_eq!(
            resolved.options,
            pairs(&[
                ("page_size", "50"),
                ("conversion_column", "purchases"),
                ("api_version", "v3")
            ])
        );
    }

    #[test]
    fn mistyped_options_are_refused_by_name() {
        let issues = resolve(
            &info(),
            &pairs(&[
                ("conversion_colum", "x"),
                ("page_size", "many"),
                ("api_version", "v1"),
            ]),
        )
        .expect_err("invalid");
        let text: Vec<String> = issues.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(text[0].contains("`many` is not an integer"), "{text:?}");
        assert!(
            text[1].contains("`v1` is not a demo API version"),
            "{text:?}"
        );
    }

    #[test]
    fn misspelled_options_are_set_aside_with_the_closest_name() {
        let resolved = resolve(
            &info(),
            &pairs(&[("conversion_colum", "x"), ("page_size", "5")]),
        )
        .expect("only unknown");
        assert_eq!(resolved.unknown.len(), 1);
        assert_eq!(resolved.unknown[0].option, "conversion_colum");
        assert!(
            resolved.unknown[0]
                .message
                .contains("did you mean `conversion_column`"),
            "{:?}",
            resolved.unknown
        );
        // Left out of what the plugin receives; the default stands in.
        assert!(!resolved
            .options
            .iter()
            .any(|(k, _)| k == "conversion_colum"));
        assert!(resolved
            .options
            .contains(&("conversion_column".into(), "purchases".into())));
    }

    #[test]
    fn sunsets_warn_sixty_days_ahead_and_expire() {
        let info = info();
        let options = resolve(&info, &pairs(&[("api_version", "v2")]))
            .expect("valid")
            .options;
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("date");
        let at = |today| api_version(&info, &options, today).expect("declared");
        assert_eq!(at(day(2026, 10, 1)).status(), "ok");
        assert_eq!(at(day(2026, 12, 2)).status(), "warning");
        assert_eq!(at(day(2026, 12, 2)).days_left, Some(44));
        assert_eq!(at(day(2027, 1, 15)).status(), "expired");
        assert!(at(day(2027, 2, 1))
            .advice("demo", "v3")
            .is_some_and(|a| a.contains("reached its sunset on 2027-01-15")));
        let newest = resolve(&info, &[]).expect("valid").options;
        assert_eq!(
            api_version(&info, &newest, day(2030, 1, 1)).map(|u| u.status()),
            Some("ok")
        );
    }

    #[test]
    fn a_plugin_that_declares_nothing_takes_any_option() {
        let mut bare = info();
        bare.options.clear();
        bare.api_versions.clear();
        let given = pairs(&[("anything", "goes")]);
        assert_eq!(resolve(&bare, &given).map(|r| r.options), Ok(given));
    }
}
