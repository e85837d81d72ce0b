//! `[auth]`: how tokens are verified (an HS256 secret, or public keys) and
//! how long `adpipe token` may let them live.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check::Issues;
use super::values;

/// Fewest bytes an HS256 secret may have (RFC 7518 §3.2: at least the hash size).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

/// `[auth]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// HS256 secret; prefer the environment form `ADPIPE_AUTH__JWT_SECRET`.
    pub jwt_secret: Option<String>,
    /// Expected `iss`, when set.
    pub issuer: Option<String>,
    /// Expected `aud`, when set.
    pub audience: Option<String>,
    /// Verify with this public key (PEM) instead of a secret.
    pub public_key_file: Option<PathBuf>,
    /// Algorithm of `public_key_file` (RS256 when unset).
    pub algorithm: Option<KeyAlgorithm>,
    /// The `kid` tokens signed by `public_key_file` carry, if any.
    pub public_key_id: Option<String>,
    /// Verify with the keys of this JWKS document (each selected by `kid`).
    pub jwks_file: Option<PathBuf>,
    /// Longest lifetime `adpipe token --ttl` may give a token (`30d`, `12h`...).
    #[serde(with = "values::lifetime")]
    pub max_token_ttl: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            jwt_secret: None,
            issuer: None,
            audience: None,
            public_key_file: None,
            algorithm: None,
            public_key_id: None,
            jwks_file: None,
            max_token_ttl: Duration::from_secs(30 * 86_400),
        }
    }
}

/// A public-key algorithm `auth.public_key_file` may use (as JWT names it).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum KeyAlgorithm {
    #[default]
    #[serde(rename = "RS256")]
    Rs256,
    #[serde(rename = "RS384")]
    Rs384,
    #[serde(rename = "RS512")]
    Rs512,
    #[serde(rename = "PS256")]
    Ps256,
    #[serde(rename = "PS384")]
    Ps384,
    #[serde(rename = "PS512")]
    Ps512,
    #[serde(rename = "ES256")]
    Es256,
    #[serde(rename = "ES384")]
    Es384,
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl KeyAlgorithm {
    /// The same algorithm as `jsonwebtoken` names it.
    pub fn jwt(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm;
        match self {
            KeyAlgorithm::Rs256 => Algorithm::RS256,
            KeyAlgorithm::Rs384 => Algorithm::RS384,
            KeyAlgorithm::Rs512 => Algorithm::RS512,
            KeyAlgorithm::Ps256 => Algorithm::PS256,
            KeyAlgorithm::Ps384 => Algorithm::PS384,
            KeyAlgorithm::Ps512 => Algorithm::PS512,
            KeyAlgorithm::Es256 => Algorithm::ES256,
            KeyAlgorithm::Es384 => Algorithm::ES384,
            KeyAlgorithm::EdDsa => Algorithm::EdDSA,
        }
    }
}

struct RedactedSecret<'a>(&'a Option<String>);

impl fmt::Debug for RedactedSecret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "<redacted>"
        } else {
            "<unset>"
        })
    }
}

impl AuthConfig {
    /// Tokens are verified with public keys (RS256/ES256/JWKS), not a secret.
    pub fn uses_public_keys(&self) -> bool {
        self.public_key_file.is_some() || self.jwks_file.is_some()
    }

    /// For logs: never the secret itself.
    pub fn describe(&self) -> String {
        format!(
            "jwt_secret={:?} issuer={:?} audience={:?} public_key_file={:?} jwks_file={:?}",
            RedactedSecret(&self.jwt_secret),
            self.issuer,
            self.audience,
            self.public_key_file,
            self.jwks_file
        )
    }

    /// `[auth]`'s mistakes: one way to verify tokens, fully described.
    pub(super) fn validate(&self, issues: &mut Issues) {
        let asymmetric = self.uses_public_keys();
        if asymmetric && self.audience.as_deref().is_none_or(|a| a.trim().is_empty()) {
            let key = if self.public_key_file.is_some() {
                "auth.public_key_file"
            } else {
                "auth.jwks_file"
            };
            issues.add(
                "auth.audience",
                format!("{key} is set (public-key mode) but no audience is"),
                "set audience = \"<the aud your identity provider puts in adpipe's tokens>\": a token the provider issued for another application must not be accepted here",
            );
        }
        if asymmetric && self.jwt_secret.is_some() {
            issues.add(
                "auth.jwt_secret",
                "a JWT secret and public keys are both configured",
                "choose one: HS256 with a secret, or RS256/ES256 with public_key_file / jwks_file",
            );
        }
        if self.algorithm.is_some() && self.public_key_file.is_none() {
            issues.add(
                "auth.algorithm",
                "is set but auth.public_key_file is not",
                "the algorithm applies to public_key_file (JWKS keys carry their own)",
            );
        }
        if let Some(path) = &self.public_key_file {
            issues.file("auth.public_key_file", path);
        }
        if let Some(path) = &self.jwks_file {
            issues.file("auth.jwks_file", path);
        }
        if let Some(secret) = &self.jwt_secret {
            if secret.len() < MIN_JWT_SECRET_BYTES {
                issues.add(
                    "auth.jwt_secret",
                    format!(
                        "the JWT secret (from auth.jwt_secret, ADPIPE_AUTH__JWT_SECRET or ADPIPE_JWT_SECRET) is {} bytes; at least {MIN_JWT_SECRET_BYTES} are needed",
                        secret.len()
                    ),
                    "generate one with `openssl rand -hex 32` and pass it as ADPIPE_AUTH__JWT_SECRET",
                );
            }
        }
    }
}
