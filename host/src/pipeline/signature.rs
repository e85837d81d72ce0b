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

/// Check `header_value` = `prefix` + hex HMAC-SHA256(secret, body), in constant time.
pub fn verify_body(
    secret: &[u8],
    body: &[u8],
    header: &str,
    header_value: Option<&str>,
    prefix: &str,
) -> Result<(), SignatureError> {
    let value = header_value.ok_or_else(|| SignatureError::Missing(header.to_owned()))?;
    let hex_part = value
        .trim()
        .strip_prefix(prefix)
        .ok_or_else(|| SignatureError::Malformed(header.to_owned()))?;
    verify_hex(secret, &[body], header, hex_part)
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

/// Whether a WIT 0.1.0 `hmac-sha256-body` scheme naming `header` means
/// LinkedIn's, whose HMAC covers the prefix *and* the body.
///
/// WIT 0.1.0 cannot say what a platform signs (0.2.0 will): the host knows
/// that `X-LI-Signature` is LinkedIn's, where the digest is over
/// `hmacsha256=` + body (see [`verify_prefixed_body`]).
pub fn signs_prefixed_body(header: &str) -> bool {
    header.eq_ignore_ascii_case("x-li-signature")
}

/// Check LinkedIn's `X-LI-Signature`: hex HMAC-SHA256(secret, `prefix` + body),
/// with or without `prefix` in front of the digest in the header, in constant time.
///
/// LinkedIn: "the HMACSHA256 hash of the JSON-encoded string representation of
/// the POST body prefixed by `hmacsha256=`", computed with the app's client
/// secret (learn.microsoft.com/en-us/linkedin/shared/api-guide/webhook-validation).
pub fn verify_prefixed_body(
    secret: &[u8],
    body: &[u8],
    header: &str,
    header_value: Option<&str>,
    prefix: &str,
) -> Result<(), SignatureError> {
    let value = header_value.ok_or_else(|| SignatureError::Missing(header.to_owned()))?;
    let value = value.trim();
    let hex_part = value.strip_prefix(prefix).unwrap_or(value);
    verify_hex(secret, &[prefix.as_bytes(), body], header, hex_part)
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

    #[test]
    fn body_signatures() {
        let sig = format!("sha256={}", hmac_hex(b"secret", b"{}"));
        assert_eq!(
            verify_body(
                b"secret",
                b"{}",
                "x-hub-signature-256",
                Some(&sig),
                "sha256="
            ),
            Ok(())
        );
        assert_eq!(
            verify_body(
                b"secret",
                b"{ }",
                "x-hub-signature-256",
                Some(&sig),
                "sha256="
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_body(
                b"other",
                b"{}",
                "x-hub-signature-256",
                Some(&sig),
                "sha256="
            ),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            verify_body(b"secret", b"{}", "h", Some("sha1=00"), "sha256="),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            verify_body(b"secret", b"{}", "h", None, "sha256="),
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
        let check = |value: &str| {
            verify_prefixed_body(
                b"li-client-secret",
                body,
                "x-li-signature",
                Some(value),
                "hmacsha256=",
            )
        };
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
        assert!(signs_prefixed_body("X-LI-Signature"));
        assert!(!signs_prefixed_body("x-hub-signature-256"));
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
