//! Bearer authentication and role checks (docs/contracts.md §4).
//!
//! Two kinds of credentials reach the API:
//! - **JWTs** with claims `sub`, `tenant`, `roles`, `exp` (required), `nbf`,
//!   `iss` and `aud` (checked when present or configured). Verified either
//!   with an HS256 secret (the default: `auth.jwt_secret` /
//!   `ADPIPE_JWT_SECRET`, or `<data_dir>/jwt-secret`, generated once and
//!   written atomically with mode 0600 in a 0700 directory; a secret shorter
//!   than 32 bytes, wherever it comes from, is refused) or with public keys
//!   (`auth.public_key_file` PEM, `auth.jwks_file`, and then `auth.audience`
//!   is required), never both: asymmetric mode accepts no HMAC algorithm, so
//!   a token signed with the public key as an HMAC secret (algorithm
//!   confusion) is refused. `alg: none` never parses. A token's `kid` selects
//!   its key.
//! - **API keys** for machine clients (`adp_<id>_<secret>`); see
//!   [`crate::auth::apikeys`].

pub mod apikeys;

use std::path::Path;
use std::str::FromStr;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};

use crate::config::{AuthConfig, MIN_JWT_SECRET_BYTES};

/// A role a token may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads insights and campaigns.
    Viewer,
    /// Viewer, plus dead letters.
    Analyst,
    /// Pushes reports.
    Ingest,
    /// Everything of its own tenant.
    Admin,
    /// The deployment: plugins, reloads, metrics of every tenant. Never
    /// implied by `admin` (a tenant's admin does not run the deployment).
    Operator,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Analyst,
        Role::Ingest,
        Role::Admin,
        Role::Operator,
    ];

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "analyst" => Some(Role::Analyst),
            "ingest" => Some(Role::Ingest),
            "admin" => Some(Role::Admin),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Analyst => "analyst",
            Role::Ingest => "ingest",
            Role::Admin => "admin",
            Role::Operator => "operator",
        }
    }

    /// Whether holding `self` grants `required`: `admin` grants every
    /// tenant role, `analyst` grants `viewer`, and only `operator` grants
    /// `operator`.
    pub fn grants(self, required: Role) -> bool {
        self == required
            || (self == Role::Admin && required != Role::Operator)
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
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

impl Claims {
    /// Whether any held role grants `required`.
    pub fn has(&self, required: Role) -> bool {
        self.roles.iter().any(|r| r.grants(required))
    }
}

/// Why a credential was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "missing credentials: send `Authorization: Bearer <jwt or API key>` (mint a token with `adpipe token`, a key with `adpipe keys create`)"
    )]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("invalid API key: {0}")]
    InvalidKey(&'static str),
}

/// Could not set up token verification.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("JWT key file {path}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("the JWT secret from {origin} is {len} bytes; at least {MIN_JWT_SECRET_BYTES} are needed ({hint})")]
    WeakSecret {
        origin: String,
        len: usize,
        hint: &'static str,
    },
}

/// One key tokens may be verified with.
#[derive(Clone)]
struct VerifyingKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Signs (HS256 only) and verifies tokens.
#[derive(Clone)]
pub struct JwtKeys {
    /// Present in HS256 mode: `adpipe token` can mint.
    signer: Option<EncodingKey>,
    verifiers: Vec<VerifyingKey>,
    issuer: Option<String>,
    audience: Option<String>,
}

fn is_hmac(a: Algorithm) -> bool {
    matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

impl JwtKeys {
    /// Keys from a shared secret.
    pub fn hs256(secret: &[u8], issuer: Option<&str>) -> JwtKeys {
        JwtKeys {
            signer: Some(EncodingKey::from_secret(secret)),
            verifiers: vec![VerifyingKey {
                kid: None,
                algorithm: Algorithm::HS256,
                key: DecodingKey::from_secret(secret),
            }],
            issuer: issuer.map(String::from),
            audience: None,
        }
    }

    /// Expect this `aud` in every token.
    pub fn with_audience(mut self, audience: Option<&str>) -> JwtKeys {
        self.audience = audience.map(String::from);
        self
    }

    /// Verification by public keys only (no minting).
    pub fn public_keys(
        pem: Option<(&Path, Algorithm, Option<&str>)>,
        jwks: Option<&Path>,
        issuer: Option<&str>,
    ) -> Result<JwtKeys, KeyError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| KeyError::File {
                path: path.display().to_string(),
                source,
            })
        };
        let invalid = |path: &Path, reason: String| KeyError::Invalid {
            path: path.display().to_string(),
            reason,
        };
        let mut verifiers = Vec::new();
        if let Some((path, algorithm, kid)) = pem {
            let bytes = read(path)?;
            let key = match algorithm {
                Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512 => DecodingKey::from_rsa_pem(&bytes),
                Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&bytes),
                Algorithm::EdDSA => DecodingKey::from_ed_pem(&bytes),
                other => {
                    return Err(invalid(
                        path,
                        format!("{other:?} is not a public-key algorithm"),
                    ))
                }
            }
            .map_err(|e| invalid(path, format!("not a {algorithm:?} public key in PEM: {e}")))?;
            verifiers.push(VerifyingKey {
                kid: kid.map(String::from),
                algorithm,
                key,
            });
        }
        if let Some(path) = jwks {
            let set: JwkSet = serde_json::from_slice(&read(path)?)
                .map_err(|e| invalid(path, format!("not a JWKS document: {e}")))?;
            for (i, jwk) in set.keys.iter().enumerate() {
                let algorithm = jwk_algorithm(jwk)
                    .ok_or_else(|| invalid(path, format!("key {i}: no usable algorithm")))?;
                if is_hmac(algorithm) {
                    return Err(invalid(
                        path,
                        format!("key {i}: symmetric keys are not accepted in a JWKS"),
                    ));
                }
                let key = DecodingKey::from_jwk(jwk)
                    .map_err(|e| invalid(path, format!("key {i}: {e}")))?;
                verifiers.push(VerifyingKey {
                    kid: jwk.common.key_id.clone(),
                    algorithm,
                    key,
                });
            }
        }
        Ok(JwtKeys {
            signer: None,
            verifiers,
            issuer: issuer.map(String::from),
            audience: None,
        })
    }

    /// The keys `[auth]` describes: public keys when configured, else the
    /// configured secret, else the data directory's generated one.
    pub fn from_config(auth: &AuthConfig, data_dir: &Path) -> Result<JwtKeys, KeyError> {
        let keys = if auth.uses_public_keys() {
            let algorithm = auth.algorithm.unwrap_or_default().jwt();
            Self::public_keys(
                auth.public_key_file
                    .as_deref()
                    .map(|p| (p, algorithm, auth.public_key_id.as_deref())),
                auth.jwks_file.as_deref(),
                auth.issuer.as_deref(),
            )?
        } else {
            Self::load(auth.jwt_secret.as_deref(), auth.issuer.as_deref(), data_dir)?
        };
        Ok(keys.with_audience(auth.audience.as_deref()))
    }

    /// The configured secret, or the data directory's generated one; either
    /// must hold at least [`MIN_JWT_SECRET_BYTES`] bytes.
    pub fn load(
        configured: Option<&str>,
        issuer: Option<&str>,
        data_dir: &Path,
    ) -> Result<JwtKeys, KeyError> {
        if let Some(secret) = configured {
            if secret.len() < MIN_JWT_SECRET_BYTES {
                return Err(KeyError::WeakSecret {
                    origin: "auth.jwt_secret / ADPIPE_AUTH__JWT_SECRET / ADPIPE_JWT_SECRET".into(),
                    len: secret.len(),
                    hint: "generate one with `openssl rand -hex 32`",
                });
            }
            return Ok(Self::hs256(secret.as_bytes(), issuer));
        }
        let path = data_dir.join("jwt-secret");
        let err = |source| KeyError::File {
            path: path.display().to_string(),
            source,
        };
        let secret = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create_private_dir(data_dir).map_err(err)?;
                let secret = hex::encode(rand::random::<[u8; 32]>());
                match write_private_once(&path, &secret) {
                    Ok(()) => secret,
                    // Another process (`adpipe token` beside `adpipe serve`)
                    // wrote it first: use theirs, so both mint alike.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        std::fs::read_to_string(&path)
                            .map_err(err)?
                            .trim()
                            .to_owned()
                    }
                    Err(e) => return Err(err(e)),
                }
            }
            Err(e) => return Err(err(e)),
        };
        if secret.len() < MIN_JWT_SECRET_BYTES {
            return Err(KeyError::WeakSecret {
                origin: path.display().to_string(),
                len: secret.len(),
                hint: "delete the file to have a new one generated, or set ADPIPE_AUTH__JWT_SECRET",
            });
        }
        Ok(Self::hs256(secret.as_bytes(), issuer))
    }

    /// Mint a token (HS256 mode; `None` with public keys, whose private half
    /// lives with the identity provider).
    pub fn mint(&self, claims: &Claims) -> Option<String> {
        let mut claims = claims.clone();
        if claims.aud.is_none() {
            claims.aud = self.audience.clone();
        }
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            self.signer.as_ref()?,
        )
        .ok()
    }

    /// Verify a bearer token.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let header =
            decode_header(token).map_err(|_| AuthError::Invalid("malformed token".into()))?;
        if let Some(kid) = &header.kid {
            if self.verifiers.iter().all(|k| k.kid.as_deref() != Some(kid)) {
                // HS256 mode names no key ids: accept any `kid` there.
                if self.verifiers.iter().any(|k| k.kid.is_some()) {
                    return Err(AuthError::Invalid(format!("unknown key id `{kid}`")));
                }
            }
        }
        let candidates: Vec<&VerifyingKey> = self
            .verifiers
            .iter()
            .filter(|k| k.algorithm == header.alg)
            .filter(|k| match (&header.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            })
            .collect();
        if candidates.is_empty() {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} not accepted",
                header.alg
            )));
        }
        let mut last = AuthError::Invalid("signature does not verify".into());
        for key in candidates {
            let mut validation = Validation::new(key.algorithm);
            validation.leeway = 0;
            validation.validate_nbf = true;
            validation.set_required_spec_claims(&["exp"]);
            if let Some(iss) = &self.issuer {
                validation.set_issuer(&[iss]);
            }
            match &self.audience {
                Some(aud) => validation.set_audience(&[aud]),
                None => validation.validate_aud = false,
            }
            match decode::<Claims>(token, &key.key, &validation) {
                Ok(d) => return Ok(d.claims),
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::ExpiredSignature => return Err(AuthError::Expired),
                        ErrorKind::ImmatureSignature => {
                            return Err(AuthError::Invalid(
                                "the token is not valid yet (nbf)".into(),
                            ))
                        }
                        ErrorKind::InvalidSignature => {
                            AuthError::Invalid("signature does not verify".into())
                        }
                        ErrorKind::InvalidAlgorithm => {
                            AuthError::Invalid("algorithm not accepted".into())
                        }
                        ErrorKind::InvalidIssuer => {
                            return Err(AuthError::Invalid("issuer not accepted".into()))
                        }
                        ErrorKind::InvalidAudience => {
                            return Err(AuthError::Invalid("audience not accepted".into()))
                        }
                        ErrorKind::MissingRequiredClaim(c) => {
                            return Err(AuthError::Invalid(format!("missing claim `{c}`")))
                        }
                        ErrorKind::Json(_) => {
                            return Err(AuthError::Invalid(
                                "claims are not of the expected shape".into(),
                            ))
                        }
                        _ => AuthError::Invalid("malformed token".into()),
                    }
                }
            }
        }
        Err(last)
    }
}

/// A JWK's algorithm: its `alg`, else what its key type implies.
fn jwk_algorithm(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
    if let Some(alg) = &jwk.common.key_algorithm {
        return Algorithm::from_str(&format!("{alg:?}")).ok();
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(_) => Some(Algorithm::EdDSA),
        AlgorithmParameters::OctetKey(_) => None,
    }
}

/// Create `dir` (and missing parents) readable by the owner only (0700 on
/// Unix); an existing directory is left as it is.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Write `contents` to `path` atomically and only if `path` does not exist:
/// a temporary file in the same directory (mode 0600, from `tempfile`),
/// flushed to disk, then moved into place without replacing anything
/// (`persist_noclobber`: `renameat2(RENAME_NOREPLACE)` or link + unlink), and
/// the directory synced so the name survives a crash. A reader never sees a
/// partial secret; `AlreadyExists` when another process won the race.
fn write_private_once(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::Builder::new()
        .prefix(".jwt-secret.")
        .tempfile_in(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents.as_bytes())?;
    file.as_file().sync_all()?;
    file.persist_noclobber(path).map_err(|e| e.error)?;
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
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
    crate::config::parse_seconds(text)
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
            nbf: None,
            iss: None,
            aud: None,
        }
    }

    #[test]
    fn round_trip_and_expiry() {
        let keys = JwtKeys::hs256(b"0123456789abcdef0123456789abcdef", None);
        let token = keys.mint(&claims(now_unix() + 60)).expect("mint");
        assert_eq!(keys.verify(&token).expect("valid").tenant, "demo");
        assert_eq!(
            keys.verify(&keys.mint(&claims(now_unix() - 1)).expect("mint")),
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
    fn a_short_secret_is_refused_from_the_file_or_the_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("jwt-secret"), "too-short\n").expect("write");
        let err = JwtKeys::load(None, None, dir.path())
            .err()
            .expect("a 9-byte secret file must be refused");
        let text = err.to_string();
        assert!(text.contains("jwt-secret"), "names the file: {text}");
        assert!(
            text.contains("9 bytes") && text.contains("at least 32"),
            "{text}"
        );
        let err = JwtKeys::load(Some("short"), None, dir.path())
            .err()
            .expect("a 5-byte configured secret must be refused");
        assert!(err.to_string().contains("ADPIPE_JWT_SECRET"), "{err}");
        assert!(JwtKeys::load(Some(&"x".repeat(32)), None, dir.path()).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn the_generated_secret_is_written_whole_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().expect("tempdir");
        let data_dir = root.path().join("fresh").join("data");
        let first = JwtKeys::load(None, None, &data_dir).expect("generated");
        let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(
            mode(&data_dir),
            0o700,
            "the data directory is the owner's only"
        );
        let path = data_dir.join("jwt-secret");
        assert_eq!(mode(&path), 0o600);
        let secret = std::fs::read_to_string(&path).expect("read");
        assert_eq!(secret.len(), 64, "32 random bytes, hex");
        // Nothing but the secret: the temporary file was renamed, not left.
        let names: Vec<_> = std::fs::read_dir(&data_dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("jwt-secret")]);
        // Loaded again (another process), it is the same key.
        let again = JwtKeys::load(None, None, &data_dir).expect("loaded");
        let token = first.mint(&claims(now_unix() + 60)).expect("mint");
        assert!(again.verify(&token).is_ok());
        // An existing secret is never replaced.
        write_private_once(&path, "other").expect_err("must not clobber");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), secret);
    }

    #[test]
    fn roles_grant_as_documented() {
        assert!(Role::Admin.grants(Role::Ingest));
        assert!(
            !Role::Admin.grants(Role::Operator),
            "operator is never implied by admin"
        );
        assert!(Role::Operator.grants(Role::Operator));
        assert!(!Role::Operator.grants(Role::Viewer));
        assert!(Role::Analyst.grants(Role::Viewer));
        assert!(!Role::Viewer.grants(Role::Ingest));
        assert!(!Role::Ingest.grants(Role::Viewer));
        assert_eq!(parse_ttl("1h"), Some(3600));
        assert_eq!(parse_ttl("15m"), Some(900));
        assert_eq!(parse_ttl("30"), Some(30));
        assert_eq!(parse_ttl("1y"), None);
    }
}
