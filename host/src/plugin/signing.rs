//! Ed25519 signatures of plugin components (`adpipe plugin keygen|sign`;
//! checked by the registry when `[plugin_registry] trusted_keys` is set).
//! Through `ring`, which the TLS stack already builds: no new crypto crate.
//! The private key is a PKCS#8 document (base64 in a file), never logged.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};

/// Signing failed.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("the signing key is not an Ed25519 PKCS#8 key in base64 (as `adpipe plugin keygen` writes it)")]
    BadKey,
    #[error("generating a key failed")]
    Generate,
    #[error("the signature is not base64 of 64 bytes")]
    BadSignature,
}

/// A new key pair: (private PKCS#8 in base64, public key in base64).
pub fn generate() -> Result<(String, String), SigningError> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| SigningError::Generate)?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| SigningError::Generate)?;
    Ok((
        STANDARD.encode(pkcs8.as_ref()),
        STANDARD.encode(pair.public_key().as_ref()),
    ))
}

/// Sign `component` with the base64 PKCS#8 `private_key`: (signature, public key), base64.
pub fn sign(private_key: &str, component: &[u8]) -> Result<(String, String), SigningError> {
    let pkcs8 = STANDARD
        .decode(private_key.trim())
        .map_err(|_| SigningError::BadKey)?;
    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| SigningError::BadKey)?;
    Ok((
        STANDARD.encode(pair.sign(component).as_ref()),
        STANDARD.encode(pair.public_key().as_ref()),
    ))
}

/// The trusted key (base64) that signed `component`, if one did.
pub fn verify(
    trusted: &[[u8; 32]],
    component: &[u8],
    signature: &str,
) -> Result<Option<String>, SigningError> {
    let signature = STANDARD
        .decode(signature.trim())
        .ok()
        .filter(|s| s.len() == 64)
        .ok_or(SigningError::BadSignature)?;
    Ok(trusted
        .iter()
        .find(|key| {
            UnparsedPublicKey::new(&ED25519, key.as_slice())
                .verify(component, &signature)
                .is_ok()
        })
        .map(|key| STANDARD.encode(key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(public: &str) -> [u8; 32] {
        crate::config::decode_key(public).expect("public key")
    }

    #[test]
    fn a_signature_verifies_only_for_its_key_and_its_bytes() {
        let (private, public) = generate().expect("keygen");
        let (other_private, other_public) = generate().expect("keygen");
        let (signature, signer) = sign(&private, b"component").expect("sign");
        assert_eq!(signer, public);
        assert_eq!(
            verify(
                &[key(&other_public), key(&public)],
                b"component",
                &signature
            )
            .expect("verify"),
            Some(public.clone())
        );
        assert_eq!(
            verify(&[key(&public)], b"componenT", &signature).expect("verify"),
            None
        );
        assert_eq!(
            verify(&[key(&other_public)], b"component", &signature).expect("verify"),
            None
        );
        let (other_signature, _) = sign(&other_private, b"component").expect("sign");
        assert_eq!(
            verify(&[key(&public)], b"component", &other_signature).expect("verify"),
            None
        );
        assert!(verify(&[key(&public)], b"component", "c2hvcnQ=").is_err());
        assert!(sign("not a key", b"x").is_err());
    }
}
