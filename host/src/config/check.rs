//! What the sections' validators share: the list mistakes are collected in,
//! and the checks several sections make (names, ranges, files, environment
//! variable names, sandbox limits).

use std::collections::HashSet;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::path::Path;

use super::ConfigIssue;

/// Allowed `time_limit_ms` of a plugin call (plugins and pipeline overrides).
const TIME_LIMIT_MS: RangeInclusive<u64> = 10..=600_000;
/// Allowed `memory_limit_mb` of a plugin instance (plugins and pipeline overrides).
const MEMORY_LIMIT_MB: RangeInclusive<u64> = 1..=4096;

/// Sandbox limits as a plugin, or a pipeline overriding its adapter's, sets
/// them (`None` = unset: the plugin's).
pub(super) struct SandboxLimits {
    pub time_limit_ms: Option<u64>,
    pub memory_limit_mb: Option<u64>,
    pub fuel: Option<u64>,
}

/// The mistakes found so far in one configuration file.
pub(super) struct Issues<'f> {
    file: &'f str,
    pub(super) list: Vec<ConfigIssue>,
}

impl<'f> Issues<'f> {
    pub(super) fn new(file: &'f str) -> Self {
        Issues {
            file,
            list: Vec::new(),
        }
    }

    /// One mistake at `key` (e.g. `server.listen`, `pipelines[0].name`).
    pub(super) fn add(&mut self, key: impl Display, message: impl Into<String>, hint: &str) {
        self.list.push(ConfigIssue {
            location: format!("{}: {key}", self.file),
            message: message.into(),
            hint: hint.to_owned(),
        });
    }

    /// `value` must be at least `min`.
    pub(super) fn at_least<T: PartialOrd + Display>(
        &mut self,
        key: impl Display,
        value: T,
        min: T,
        hint: &str,
    ) {
        if value < min {
            self.add(key, format!("must be at least {min}"), hint);
        }
    }

    /// `value` must lie in `range`.
    pub(super) fn within<T: PartialOrd + Display>(
        &mut self,
        key: impl Display,
        value: T,
        range: RangeInclusive<T>,
        hint: &str,
    ) {
        if !range.contains(&value) {
            let (min, max) = range.into_inner();
            self.add(key, format!("must be between {min} and {max}"), hint);
        }
    }

    /// A file the configuration names must exist (paths are already
    /// resolved against the configuration file's directory).
    pub(super) fn file(&mut self, key: impl Display, path: &Path) {
        if !path.is_file() {
            self.add(
                key,
                format!("{} does not exist", path.display()),
                "paths are relative to the configuration file",
            );
        }
    }

    /// A slot that names an environment variable must hold a name, not the
    /// secret itself (which is then not echoed).
    pub(super) fn env_name(&mut self, key: impl Display, name: &str, hint: &str) {
        if !is_env_name(name) {
            self.add(
                key,
                format!(
                    "`{}` is not an environment variable name",
                    redact_if_secretish(name)
                ),
                hint,
            );
        }
    }

    /// A `[[plugins]]` or `[[pipelines]]` name: a slug, declared once.
    pub(super) fn name<'n>(
        &mut self,
        key: &str,
        name: &'n str,
        seen: &mut HashSet<&'n str>,
        what: &str,
        slug_hint: &str,
    ) {
        if !is_slug(name) {
            self.add(key, format!("`{name}` is not a valid name"), slug_hint);
        }
        if !seen.insert(name) {
            self.add(
                key,
                format!("{what} `{name}` is declared twice"),
                &format!("give each {what} a unique name"),
            );
        }
    }

    /// Sandbox limits under `prefix` (`metered` = `sandbox.fuel`); `hints`
    /// explain the time and memory bounds.
    pub(super) fn sandbox_limits(
        &mut self,
        prefix: &str,
        limits: SandboxLimits,
        metered: bool,
        [time_hint, memory_hint]: [&str; 2],
    ) {
        if let Some(ms) = limits.time_limit_ms {
            self.within(
                format!("{prefix}.time_limit_ms"),
                ms,
                TIME_LIMIT_MS,
                time_hint,
            );
        }
        if let Some(mb) = limits.memory_limit_mb {
            self.within(
                format!("{prefix}.memory_limit_mb"),
                mb,
                MEMORY_LIMIT_MB,
                memory_hint,
            );
        }
        if limits.fuel.is_some() && !metered {
            self.add(
                format!("{prefix}.fuel"),
                "a fuel budget needs fuel metering",
                "set [sandbox] fuel = true, or remove fuel",
            );
        }
    }
}

/// The scheme of `url` (`redis` in `redis://…`), if it has one.
pub(super) fn scheme(url: &str) -> Option<&str> {
    url.split_once("://").map(|(scheme, _)| scheme)
}

/// Lowercase letters, digits, `-`, `_`; 1..=64 chars.
pub fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Three ASCII capital letters.
pub fn is_currency(s: &str) -> bool {
    s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase())
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.as_bytes()[0].is_ascii_digit()
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// A value in an env-name slot that is not a name may be a pasted secret: don't echo it.
fn redact_if_secretish(s: &str) -> String {
    if s.len() > 12 {
        format!("{}…", &s.chars().take(3).collect::<String>())
    } else {
        s.to_owned()
    }
}
