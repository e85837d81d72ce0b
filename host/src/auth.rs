//! Bearer JWT authentication and role checks (DESIGN.md §4).
//!
//! Claims: `sub`, `tenant`, `roles`, `exp` (required), `iss` (checked when
//! configured). HS256 only here: any other `alg` (including `none`) is refused.
//! The secret comes from `auth.jwt_secret` / `ADPIPE_JWT_SECRET`, or from
//! `<data_dir>/jwt-secret`, generated once with mode 0600.

use std::path::Path;

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// A role a token may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads insights and campaigns.
    Viewer,
    /// Viewer, plus dead letters.
    Analyst,
    /// Pushes reports.
    Ingest,
    /// Everything.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "analyst" => Some(Role::Analyst),
            "ingest" => Some(Role::Ingest),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Whether holding `self` grants `required`.
    pub fn grants(self, required: Role) -> bool {
        self == required
            || self == Role::Admin
            || (self == Role::Analyst && required == Role::Viewer)
    }
}

/// The claims adpipe reads.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub sub: String,
    pub tenant: String,
    pub roles: Vec<Role>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

impl Claims {
    /// Whether any held role grants `required`.
    pub fn has(&self, required: Role) -> bool {
        self.roles.iter().any(|r| r.grants(required))
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "missing bearer token: send `Authorization: Bearer <jwt>` (mint one with `adpipe token`)"
    )]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Could not obtain a signing secret.
#[derive(Debug, thiserror::Error)]
#[error("JWT secret file {path}")]
pub struct SecretError {
    path: String,
    #[source]
    source: std::io::Error,
}

/// Signs and verifies tokens.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl JwtKeys {
    /// Keys from a shared secret.
    pub fn hs256(secret: &[u8], issuer: Option<&str>) -> JwtKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp"]);
        if let Some(iss) = issuer {
            validation.set_issuer(&[iss]);
        }
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// The configured secret, or the data directory's generated one.
    pub fn load(
        configured: Option<&str>,
        issuer: Option<&str>,
        data_dir: &Path,
    ) -> Result<JwtKeys, SecretError> {
        if let Some(secret) = configured {
            return Ok(Self::hs256(secret.as_bytes(), issuer));
        }
        let path = data_dir.join("jwt-secret");
        let err = |source| SecretError {
            path: path.display().to_string(),
            source,
        };
        let secret = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir).map_err(err)?;
                let secret = hex::encode(rand::random::<[u8; 32]>());
                write_private(&path, &secret).map_err(err)?;
                secret
            }
            Err(e) => return Err(err(e)),
        };
        Ok(Self::hs256(secret.as_bytes(), issuer))
    }

    /// Mint a token.
    pub fn mint(&self, claims: &Claims) -> String {
        // Encoding HS256 with a valid key cannot fail for serializable claims.
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding).unwrap_or_default()
    }

    /// Verify a bearer token.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature => {
                    AuthError::Invalid("signature does not verify".into())
                }
                ErrorKind::InvalidAlgorithm => AuthError::Invalid("algorithm not accepted".into()),
                ErrorKind::InvalidIssuer => AuthError::Invalid("issuer not accepted".into()),
                ErrorKind::MissingRequiredClaim(c) => {
                    AuthError::Invalid(format!("missing claim `{c}`"))
                }
                ErrorKind::Json(_) => {
                    AuthError::Invalid("claims are not of the expected shape".into())
                }
                _ => AuthError::Invalid("malformed token".into()),
            })
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents.as_bytes())
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Parse a TTL like `3600`, `90s`, `15m`, `1h`, `7d`.
pub fn parse_ttl(text: &str) -> Option<u64> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "u".into(),
            tenant: "demo".into(),
            roles: vec![Role::Viewer],
            exp,
            iat: None,
            iss: None,
        }
    }

    #[test]
    fn round_trip_and_expiry() {
        let keys = JwtKeys::hs256(b"0123456789abcdef0123456789abcdef", None);
        let token = keys.mint(&claims(now_unix() + 60));
        assert_eq!(keys.verify(&token).expect("valid").tenant, "demo");
        assert_eq!(
            keys.verify(&keys.mint(&claims(now_unix() - 1))),
            Err(AuthError::Expired)
        );
        let other = JwtKeys::hs256(b"another-secret-another-secret-xx", None);
        assert!(matches!(other.verify(&token), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn alg_none_is_refused() {
        let keys = JwtKeys::hs256(b"0123456789abcdef0123456789abcdef", None);
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let payload = serde_json::to_string(&claims(now_unix() + 60)).expect("json");
        let token = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&payload)
        );
        assert!(matches!(keys.verify(&token), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn roles_grant_as_documented() {
        assert!(Role::Admin.grants(Role::Ingest));
        assert!(Role::Analyst.grants(Role::Viewer));
        assert!(!Role::Viewer.grants(Role::Ingest));
        assert!(!Role::Ingest.grants(Role::Viewer));
        assert_eq!(parse_ttl("1h"), Some(3600));
        assert_eq!(parse_ttl("15m"), Some(900));
        assert_eq!(parse_ttl("30"), Some(30));
        assert_eq!(parse_ttl("1y"), None);
    }
}
