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
    let expected =
        hex::decode(hex_part).map_err(|_| SignatureError::Malformed(header.to_owned()))?;
    let mut mac = mac(secret);
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
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
