//! API keys for machine clients: `adp_<id>_<secret>`, sent as
//! `Authorization: Bearer <key>` or `X-API-Key: <key>`.
//!
//! Only a SHA-256 digest of the secret is kept in metadata (the secret has
//! 256 bits of entropy, so a fast digest is enough); the comparison is
//! constant-time. Keys are scoped to one tenant and a set of roles, and
//! revocable (`adpipe keys revoke`, `DELETE /v1/keys/{id}`).

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::{AuthError, Claims, Role};
use crate::metadata::{ApiKeyRecord, Metadata};

/// Every key starts with this.
pub const PREFIX: &str = "adp_";
const ID_LEN: usize = 12;

/// A key just made: the record to store and the key to show once.
pub struct NewApiKey {
    pub record: ApiKeyRecord,
    pub key: String,
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Make a key for `tenant` with `roles`.
pub fn generate(tenant: &str, name: &str, roles: &[Role]) -> NewApiKey {
    let id = hex::encode(rand::random::<[u8; ID_LEN / 2]>());
    let secret =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    NewApiKey {
        key: format!("{PREFIX}{id}_{secret}"),
        record: ApiKeyRecord {
            id,
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            roles: roles.iter().map(|r| r.as_str().to_owned()).collect(),
            created_at_ms: chrono::Utc::now().timestamp_millis(),
            revoked_at_ms: None,
            secret_sha256: digest(&secret),
        },
    }
}

/// Split a presented key into id and secret.
pub fn parse(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(PREFIX)?;
    let id = rest.get(..ID_LEN)?;
    let secret = rest.get(ID_LEN..)?.strip_prefix('_')?;
    (id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty()).then_some((id, secret))
}

/// Whether a credential looks like an API key (rather than a JWT).
pub fn looks_like_key(credential: &str) -> bool {
    credential.starts_with(PREFIX)
}

/// Check a presented key against metadata; the caller it stands for.
pub async fn verify(metadata: &Metadata, presented: &str) -> Result<Claims, AuthError> {
    let (id, secret) = parse(presented).ok_or(AuthError::InvalidKey("malformed key"))?;
    let record = metadata
        .api_key(id)
        .await
        .map_err(|_| AuthError::InvalidKey("keys cannot be checked right now"))?;
    // Compare against a digest even for unknown ids, so timing says nothing.
    let stored = record
        .as_ref()
        .map(|r| r.secret_sha256.clone())
        .unwrap_or_else(|| "0".repeat(64));
    let matches: bool = digest(secret).as_bytes().ct_eq(stored.as_bytes()).into();
    let record = record
        .filter(|_| matches)
        .ok_or(AuthError::InvalidKey("unknown key"))?;
    if record.revoked_at_ms.is_some() {
        return Err(AuthError::InvalidKey("the key was revoked"));
    }
    Ok(Claims {
        sub: format!("key:{}", record.id),
        tenant: record.tenant,
        roles: record.roles.iter().filter_map(|r| Role::parse(r)).collect(),
        exp: u64::MAX,
        iat: None,
        nbf: None,
        iss: None,
        aud: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back() {
        let made = generate("demo", "ci", &[Role::Ingest]);
        let (id, secret) = parse(&made.key).expect("parses");
        assert_eq!(id, made.record.id);
        assert_eq!(digest(secret), made.record.secret_sha256);
        assert_eq!(made.record.roles, vec!["ingest"]);
        assert!(parse("adp_short").is_none());
        assert!(parse("adp_zzzzzzzzzzzz_secret").is_none());
        assert!(parse("eyJhbGciOi.x.y").is_none());
    }
}
