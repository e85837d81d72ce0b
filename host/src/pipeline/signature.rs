//! Webhook signature checks, done by the host with secrets plugins never see.
//! Comparisons are constant-time (`hmac`'s `verify_slice`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a delivery's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the `{0}` header is missing")]
    Missing(String),
    #[error("the `{0}` header is not of the expected form")]
    Malformed(String),
    #[error("the signature does not match the body")]
    Mismatch,
    #[error("the signature timestamp is outside the accepted window of {0} s")]
    Stale(u32),
}

/// Hex HMAC-SHA256 of `message` with `secret`.
pub fn hmac_hex(secret: &[u8], message: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

fn mac(secret: &[u8]) -> HmacSha256 {
    match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        // HMAC takes keys of any length.
        Err(_) => unreachable!("HMAC accepts any key length"),
    }
}

/// What a platform signs and where it puts the digest (WIT 0.2.0 `hmac-spec`).
#[derive(Clone, Copy, Debug)]
pub struct HmacCheck<'a> {
    /// Header carrying the digest.
    pub header: &'a str,
    /// Text before the hex digest in the header (Meta `sha256=`), optional on the wire.
    pub header_prefix: &'a str,
    /// Bytes signed before the body (LinkedIn `hmacsha256=`), often empty.
    pub signed_prefix: &'a str,
}

/// Check `header_value` = [`HmacCheck::header_prefix`] (optional) + hex
/// HMAC-SHA256(secret, [`HmacCheck::signed_prefix`] + body), in constant time.
///
/// Meta: `X-Hub-Signature-256: sha256=<hex HMAC of the body>`. LinkedIn: "the
/// HMACSHA256 hash of the JSON-encoded string representation of the POST body
/// prefixed by `hmacsha256=`", computed with the app's client secret
/// (learn.microsoft.com/en-us/linkedin/shared/api-guide/webhook-validation).
pub fn verify_hmac(
    secret: &[u8],
    body: &[u8],
    check: HmacCheck<'_>,
    header_value: Option<&str>,
) -> Result<(), SignatureError> {
    let value = header_value.ok_or_else(|| SignatureError::Missing(check.header.to_owned()))?;
    let value = value.trim();
    let hex_part = if check.header_prefix.is_empty() {
        value
    } else {
        value.strip_prefix(check.header_prefix).unwrap_or(value)
    };
    verify_hex(
        secret,
        &[check.signed_prefix.as_bytes(), body],
        check.header,
        hex_part,
    )
}

/// Check that `hex_digest` is the hex HMAC-SHA256(secret, the `signed` parts
/// in order), in constant time.
fn verify_hex(
    secret: &[u8],
    signed: &[&[u8]],
    header: &str,
    hex_digest: &str,
) -> Result<(), SignatureError> {
    let expected =
        hex::decode(hex_digest).map_err(|_| SignatureError::Malformed(header.to_owned()))?;
    let mut mac = mac(secret);
    for part in signed {
        mac.update(part);
    }
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// Whether a LinkedIn `challengeCode` is a UUID (`8-4-4-4-12` hex digits, as
/// LinkedIn sends): only those are answered, so the handshake cannot be used
/// to have arbitrary text signed with the client secret.
pub fn is_uuid_challenge(code: &str) -> bool {
    code.len() == 36 && uuid::Uuid::try_parse(code).is_ok()
}

/// Check `t=<unix seconds>,s=<hex HMAC-SHA256(secret, "<t>.<body>")>` and its age.
pub fn verify_timestamped(
    secret: &[u8],
    body: &[u8],
    header: &str,
    header_value: Option<&str>,
    max_age_seconds: u32,
    now_unix: i64,
) -> Result<(), SignatureError> {
    let value = header_value.ok_or_else(|| SignatureError::Missing(header.to_owned()))?;
    let malformed = || SignatureError::Malformed(header.to_owned());
    let mut timestamp = None;
    let mut signature = None;
    for part in value.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t),
            Some(("s", s)) => signature = Some(s),
            _ => {}
        }
    }
    let timestamp_text = timestamp.ok_or_else(malformed)?;
    let timestamp: i64 = timestamp_text.parse().map_err(|_| malformed())?;
    let expected = hex::decode(signature.ok_or_else(malformed)?).map_err(|_| malformed())?;
    if (now_unix - timestamp).abs() > i64::from(max_age_seconds) {
        return Err(SignatureError::Stale(max_age_seconds));
    }
    let mut mac = mac(secret);
    mac.update(timestamp_text.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: HmacCheck<'static> = HmacCheck {
        header: "x-hub-signature-256",
        header_prefix: "sha256=",
        signed_prefix: "",
    };

    #[test]
    fn body_signatures() {
        let sig = format!("sha256={}", hmac_hex(b"secret", b"{}"));
        assert_eq!(verify_hmac(b"secret", b"{}", META, Some(&sig)), Ok(()));
        assert_eq!(
            verify_hmac(b"secret", b"{ }", META, Some(&sig)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_hmac(b"other", b"{}", META, Some(&sig)),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            verify_hmac(b"secret", b"{}", META, Some("sha1=00")),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            verify_hmac(b"secret", b"{}", META, None),
            Err(SignatureError::Missing(_))
        ));
        // Known vector: HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
        assert_eq!(
            hmac_hex(b"key", b"The quick brown fox jumps over the lazy dog"),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn linkedin_signs_the_prefixed_body() {
        let body =
            br#"{"type":"LEAD_ACTION","leadGenFormResponse":"urn:li:leadGenFormResponse:1"}"#;
        // Computed outside adpipe:
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"li-client-secret", b"hmacsha256=" + b"{\"type\":\"LEAD_ACTION\",\"leadGenFormResponse\":\"urn:li:leadGenFormResponse:1\"}", hashlib.sha256).hexdigest())'
        let digest = "579ddc09627a0991701b5bfd7f222aba8bbd9755e56681e4f3b5b41c7aa9666f";
        let linkedin = HmacCheck {
            header: "x-li-signature",
            header_prefix: "hmacsha256=",
            signed_prefix: "hmacsha256=",
        };
        let check = |value: &str| verify_hmac(b"li-client-secret", body, linkedin, Some(value));
        assert_eq!(check(digest), Ok(()));
        assert_eq!(check(&format!("hmacsha256={digest}")), Ok(()));
        // The digest of the bare body (what adpipe used to expect) is refused.
        let bare = hmac_hex(b"li-client-secret", body);
        assert_eq!(check(&bare), Err(SignatureError::Mismatch));
        assert_eq!(
            check(&format!("hmacsha256={bare}")),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(check("zz"), Err(SignatureError::Malformed(_))));
    }

    #[test]
    fn only_uuid_challenge_codes() {
        assert!(is_uuid_challenge("890e4665-4dfe-4ab1-b689-ed553bceeed0"));
        for code in [
            "",
            "abc",
            "{\"a\":1}",
            "890e46654dfe4ab1b689ed553bceeed0",
            "{890e4665-4dfe-4ab1-b689-ed553bceeed0}",
            "urn:uuid:890e4665-4dfe-4ab1-b689-ed553bceeed0",
            "890e4665-4dfe-4ab1-b689-ed553bceeedz",
        ] {
            assert!(!is_uuid_challenge(code), "{code}");
        }
    }

    #[test]
    fn timestamped_signatures_reject_stale_deliveries() {
        let body = b"{\"event\":1}";
        let sig = hmac_hex(b"s", b"1000.{\"event\":1}");
        let header = format!("t=1000,s={sig}");
        assert_eq!(
            verify_timestamped(b"s", body, "h", Some(&header), 300, 1100),
            Ok(())
        );
        assert_eq!(
            verify_timestamped(b"s", body, "h", Some(&header), 300, 1400),
            Err(SignatureError::Stale(300))
        );
        assert_eq!(
            verify_timestamped(b"x", body, "h", Some(&header), 300, 1100),
            Err(SignatureError::Mismatch)
        );
    }
}
