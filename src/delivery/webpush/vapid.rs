//! Who sends the pushes (VAPID, RFC 8292): the application server's P-256 key pair, whose
//! public half browsers were given as `applicationServerKey` when they subscribed, and the
//! contact push services may write to (`sub`). Both are checked once, at start.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{AssociatedOid, DecodePrivateKey};
use std::fmt;

const PKCS8_LABEL: &str = "PRIVATE KEY";
const SEC1_LABEL: &str = "EC PRIVATE KEY";

/// The VAPID private key. Never printed: `Debug` shows the public key only.
#[derive(Clone)]
pub struct VapidKey {
    secret: p256::SecretKey,
    /// The uncompressed public point, base64url without padding.
    public: String,
}

impl VapidKey {
    /// A P-256 private key in one of the forms the usual tools write:
    /// - PEM PKCS#8, `-----BEGIN PRIVATE KEY-----` (`openssl genpkey -algorithm EC
    ///   -pkeyopt ec_paramgen_curve:P-256`);
    /// - PEM SEC1, `-----BEGIN EC PRIVATE KEY-----` (`openssl ecparam -genkey -name
    ///   prime256v1`, with or without the `EC PARAMETERS` block before it);
    /// - the bare base64url private key the npm `web-push generate-vapid-keys` prints.
    ///
    /// A key of another curve is refused, whichever form says so (the PKCS#8 algorithm,
    /// the SEC1 parameters, or a public key that is not this scalar's P-256 point).
    /// Problems never quote the file.
    pub fn parse(text: &str) -> Result<VapidKey, String> {
        let secret = if let Some(block) = pem_block(text, PKCS8_LABEL) {
            p256::SecretKey::from_pkcs8_pem(block)
                .map_err(|_| "holds a PRIVATE KEY that is not an unencrypted P-256 key".to_owned())?
        } else if let Some(block) = pem_block(text, SEC1_LABEL) {
            parse_sec1(block)?
        } else if text.contains("-----BEGIN") {
            return Err(
                "holds no PEM \"PRIVATE KEY\" or \"EC PRIVATE KEY\" (an encrypted key must be decrypted first)"
                    .into(),
            );
        } else {
            let bytes = URL_SAFE_NO_PAD
                .decode(text.trim().trim_end_matches('='))
                .ok()
                .filter(|bytes| bytes.len() == 32)
                .ok_or("is neither PEM nor a base64url P-256 private key (32 bytes)")?;
            p256::SecretKey::from_slice(&bytes).map_err(|_| "is not a P-256 private key".to_owned())?
        };
        let public = URL_SAFE_NO_PAD.encode(secret.public_key().to_encoded_point(false).as_bytes());
        Ok(VapidKey { secret, public })
    }

    /// The public key as browsers take it (`applicationServerKey` in
    /// `pushManager.subscribe`): the uncompressed point, base64url.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// The private scalar, base64url, as the `web-push` crate reads it.
    pub(super) fn private_base64url(&self) -> p256::elliptic_curve::zeroize::Zeroizing<String> {
        p256::elliptic_curve::zeroize::Zeroizing::new(URL_SAFE_NO_PAD.encode(self.secret.to_bytes()))
    }
}

impl fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VapidKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// The first PEM block with this label, boundaries included.
fn pem_block<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = start + text[start..].find(&end)? + end.len();
    Some(&text[start..stop])
}

/// A SEC1 key, refused when its parameters name another curve. (The public key, when the
/// file has one, is checked against the scalar by `p256` itself.)
fn parse_sec1(block: &str) -> Result<p256::SecretKey, String> {
    let not_a_key = || "holds an EC PRIVATE KEY that cannot be read".to_owned();
    let (_, der) = p256::pkcs8::der::pem::decode_vec(block.as_bytes()).map_err(|_| not_a_key())?;
    let der = p256::elliptic_curve::zeroize::Zeroizing::new(der);
    let structure = sec1::EcPrivateKey::try_from(der.as_slice()).map_err(|_| not_a_key())?;
    if let Some(parameters) = structure.parameters
        && parameters.named_curve() != Some(p256::NistP256::OID)
    {
        return Err("holds an EC key of another curve than P-256 (prime256v1)".into());
    }
    p256::SecretKey::from_sec1_der(&der).map_err(|_| "is not a P-256 private key".to_owned())
}

/// The contact in the VAPID `sub` claim: a `mailto:` address or an `https:` URL (RFC 8292,
/// section 2.1), so a push service can reach the operator about this sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VapidSubject(String);

impl VapidSubject {
    pub const MAX_BYTES: usize = 512;

    pub fn parse(text: &str) -> Result<VapidSubject, String> {
        let expected = "must be a mailto: address or an https:// URL";
        if text.len() > VapidSubject::MAX_BYTES {
            return Err(format!(
                "is {} bytes, at most {} allowed",
                text.len(),
                VapidSubject::MAX_BYTES
            ));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(expected.into());
        }
        if let Some(address) = text.strip_prefix("mailto:") {
            let address = address.split('?').next().unwrap_or_default();
            crate::recipients::Email::parse(address).map_err(|_| expected.to_owned())?;
        } else {
            match url::Url::parse(text) {
                Ok(url) if url.scheme() == "https" && url.host_str().is_some_and(|h| !h.is_empty()) => {}
                _ => return Err(expected.into()),
            }
        }
        Ok(VapidSubject(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh PKCS#8 P-256 key as PEM, made with ring.
    fn pkcs8_pem() -> String {
        let rng = ring::rand::SystemRandom::new();
        let der = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        crate::delivery::jwt::pkcs8_pem(der.as_ref())
    }

    #[test]
    fn a_pkcs8_key_gives_its_public_point() {
        let key = VapidKey::parse(&pkcs8_pem()).unwrap();
        let point = URL_SAFE_NO_PAD.decode(key.public_key()).unwrap();
        assert_eq!((point.len(), point[0]), (65, 4));
        // The bare form of the same scalar is the same key.
        let again = VapidKey::parse(&key.private_base64url()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let key = VapidKey::parse(&pkcs8_pem()).unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains(key.public_key()), "{shown}");
        assert!(!shown.contains(key.private_base64url().as_str()), "{shown}");
    }

    #[test]
    fn what_is_not_a_p256_key_is_refused() {
        for bad in [
            "",
            "not a key",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n",
            "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n",
            // 32 zero bytes: base64url of the right length, but zero is no private key.
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(VapidKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn subjects_are_mailto_or_https() {
        for good in [
            "mailto:ops@example.com",
            "mailto:ops@example.com?subject=push",
            "https://example.com/contact",
        ] {
            assert_eq!(VapidSubject::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            "ops@example.com",
            "mailto:",
            "mailto:nobody",
            "http://example.com",
            "https://",
            "https://exa mple.com",
            "ftp://example.com",
        ] {
            assert!(VapidSubject::parse(bad).is_err(), "{bad:?}");
        }
        assert!(VapidSubject::parse(&format!("https://example.com/{}", "a".repeat(600))).is_err());
    }
}
