//! `[encryption]`: the keys that seal kept payloads and dead letters at rest
//! (see `crate::seal`). The current key comes from an environment variable
//! (`key_env`) or a file (`key_file`), never inline; older keys that only
//! open blobs written before a rotation are listed in `previous_key_envs` /
//! `previous_key_files`. Nothing configured: a key generated once in the
//! data directory (`<data_dir>/encryption-key`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::check::Issues;

/// `[encryption]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct EncryptionConfig {
    /// Environment variable holding the current key (64 hex characters or
    /// base64 of 32 bytes).
    pub key_env: Option<String>,
    /// File holding the current key (same forms), relative to the config file.
    pub key_file: Option<PathBuf>,
    /// Environment variables holding older keys, kept to open older blobs.
    pub previous_key_envs: Vec<String>,
    /// Files holding older keys.
    pub previous_key_files: Vec<PathBuf>,
}

const KEY_HINT: &str = "generate a key with `openssl rand -hex 32` and name the variable that holds it, e.g. key_env = \"ADPIPE_ENCRYPTION_KEY\"";

impl EncryptionConfig {
    /// `[encryption]`'s mistakes (key contents are read at start, not here).
    pub(super) fn validate(&self, issues: &mut Issues) {
        if self.key_env.is_some() && self.key_file.is_some() {
            issues.add(
                "encryption.key_file",
                "both key_env and key_file name the current key",
                "keep one; list the other under previous_key_envs or previous_key_files if it sealed older data",
            );
        }
        if let Some(name) = &self.key_env {
            issues.env_name("encryption.key_env", name, KEY_HINT);
        }
        if let Some(path) = &self.key_file {
            issues.file("encryption.key_file", path);
        }
        for (i, name) in self.previous_key_envs.iter().enumerate() {
            issues.env_name(format!("encryption.previous_key_envs[{i}]"), name, KEY_HINT);
        }
        for (i, path) in self.previous_key_files.iter().enumerate() {
            issues.file(format!("encryption.previous_key_files[{i}]"), path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load, load_in};

    #[test]
    fn keys_are_named_never_inline_and_files_must_exist() {
        let text = load(
            "[encryption]\nkey_env = \"0123456789abcdef0123456789abcdef\"\nkey_file = \"nowhere.key\"\nprevious_key_files = [\"old.key\"]\n",
            &[],
        )
        .expect_err("invalid")
        .to_string();
        for expected in [
            "encryption.key_file: both key_env and key_file",
            "encryption.key_env: `012…` is not an environment variable name",
            "encryption.key_file:",
            "encryption.previous_key_files[0]:",
        ] {
            assert!(text.contains(expected), "`{expected}` missing in {text}");
        }
        assert!(!text.contains("0123456789abcdef"), "{text}");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("old.key"), "x").expect("write");
        let config = load_in(
            dir.path(),
            "[encryption]\nkey_env = \"ADPIPE_ENCRYPTION_KEY\"\nprevious_key_files = [\"old.key\"]\n",
            &[("ADPIPE_ENCRYPTION__PREVIOUS_KEY_ENVS", "[\"ADPIPE_OLD_KEY\"]")],
        )
        .expect("valid");
        assert_eq!(
            config.encryption.key_env.as_deref(),
            Some("ADPIPE_ENCRYPTION_KEY")
        );
        assert_eq!(
            config.encryption.previous_key_files,
            vec![dir.path().join("old.key")]
        );
        assert_eq!(
            config.encryption.previous_key_envs,
            vec!["ADPIPE_OLD_KEY".to_owned()]
        );
    }
}
