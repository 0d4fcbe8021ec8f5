//! Signed JSON Web Tokens (RFC 7519), the two kinds the mobile channels need: RS256 with a
//! Google service account's RSA key (the OAuth2 assertion FCM's token endpoint takes) and
//! ES256 with an Apple `.p8` key (APNs' provider token). Built on `ring`, which the worker
//! already has, rather than a JWT crate: signing is all that is needed, and the two header
//! and claim sets are fixed.
//!
//! Keys come as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), the form both vendors hand out.
//! Errors never quote the key.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use std::fmt;

/// A private key that signs JWTs with one algorithm.
pub struct JwtKey {
    pair: Pair,
    rng: SystemRandom,
}

enum Pair {
    Rs256(RsaKeyPair),
    Es256(EcdsaKeyPair),
}

impl JwtKey {
    /// An RSA key (a service account's `private_key`): signs RS256.
    pub fn rs256_from_pem(pem: &str) -> Result<JwtKey, String> {
        let der = pkcs8_der(pem)?;
        let pair = RsaKeyPair::from_pkcs8(&der)
            .map_err(|rejected| format!("is not a usable RSA private key ({rejected})"))?;
        Ok(JwtKey {
            pair: Pair::Rs256(pair),
            rng: SystemRandom::new(),
        })
    }

    /// A P-256 key (Apple's `.p8` file): signs ES256.
    pub fn es256_from_pem(pem: &str) -> Result<JwtKey, String> {
        let der = pkcs8_der(pem)?;
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
            .map_err(|rejected| format!("is not a usable P-256 private key ({rejected})"))?;
        Ok(JwtKey {
            pair: Pair::Es256(pair),
            rng,
        })
    }

    /// The JWS `alg` this key signs with.
    pub fn algorithm(&self) -> &'static str {
        match self.pair {
            Pair::Rs256(_) => "RS256",
            Pair::Es256(_) => "ES256",
        }
    }

    /// The public half, as `ring` verifies with it: the DER `RSAPublicKey` for RS256, the
    /// uncompressed point for ES256.
    pub fn public_key(&self) -> &[u8] {
        match &self.pair {
            Pair::Rs256(pair) => pair.public().as_ref(),
            Pair::Es256(pair) => pair.public_key().as_ref(),
        }
    }

    /// `header.claims.signature`, each part base64url without padding. The header is
    /// `{"alg", "typ": "JWT"}` and `kid` when given; `claims` is written as it is.
    pub fn sign(&self, kid: Option<&str>, claims: &serde_json::Value) -> Result<String, String> {
        let mut header = serde_json::json!({ "alg": self.algorithm(), "typ": "JWT" });
        if let Some(kid) = kid {
            header["kid"] = kid.into();
        }
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = match &self.pair {
            Pair::Rs256(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(
                    &RSA_PKCS1_SHA256,
                    &self.rng,
                    signing_input.as_bytes(),
                    &mut signature,
                )
                .map_err(|_| "cannot sign with the RSA key".to_owned())?;
                signature
            }
            Pair::Es256(pair) => pair
                .sign(&self.rng, signing_input.as_bytes())
                .map_err(|_| "cannot sign with the P-256 key".to_owned())?
                .as_ref()
                .to_vec(),
        };
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JwtKey({}, [redacted])", self.algorithm())
    }
}

/// The DER inside a PKCS#8 PEM block. The older one-algorithm forms (`RSA PRIVATE KEY`,
/// `EC PRIVATE KEY`) are refused with the command that converts them.
fn pkcs8_der(pem: &str) -> Result<Vec<u8>, String> {
    const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
    const END: &str = "-----END PRIVATE KEY-----";
    if pem.contains("-----BEGIN RSA PRIVATE KEY-----") || pem.contains("-----BEGIN EC PRIVATE KEY-----") {
        return Err(
            "is not PKCS#8 (convert it with `openssl pkcs8 -topk8 -nocrypt -in OLD -out NEW`)".into(),
        );
    }
    if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return Err("is encrypted; give the key without a passphrase".into());
    }
    let body = pem
        .split_once(BEGIN)
        .and_then(|(_, rest)| rest.split_once(END))
        .map(|(body, _)| body)
        .ok_or_else(|| format!("is not a PEM private key (no {BEGIN} ... {END} block)"))?;
    let base64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD
        .decode(base64)
        .map_err(|_| "is not a PEM private key (its body is not base64)".to_owned())
}

/// A PKCS#8 DER key as PEM, as key files hold it (for the unit tests of key readers).
#[cfg(test)]
pub(crate) fn pkcs8_pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    use super::pkcs8_pem as pem;

    /// An RSA key made by the openssl CLI (ring cannot generate RSA keys), in the PKCS#8
    /// PEM form of a service account's `private_key`.
    fn rsa_pem() -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        let status = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("the openssl CLI (scripts/test-deps.sh installs it)");
        assert!(status.success());
        std::fs::read_to_string(path).unwrap()
    }

    fn p256_pem() -> String {
        let rng = SystemRandom::new();
        pem(
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .unwrap()
                .as_ref(),
        )
    }

    /// Splits a JWT, checks its signature, returns the decoded header and claims.
    fn verify(
        token: &str,
        algorithm: &'static dyn ring::signature::VerificationAlgorithm,
        public_key: &[u8],
    ) -> (serde_json::Value, serde_json::Value) {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "{token}");
        for part in &parts {
            assert!(
                !part.contains('=') && !part.contains('+') && !part.contains('/'),
                "{part}"
            );
        }
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        UnparsedPublicKey::new(algorithm, public_key)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .expect("a valid signature");
        let decode = |part: &str| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap();
        (decode(parts[0]), decode(parts[1]))
    }

    #[test]
    fn rs256_tokens_verify_with_the_public_key() {
        let key = JwtKey::rs256_from_pem(&rsa_pem()).unwrap();
        let claims = serde_json::json!({ "iss": "worker@project.iam.gserviceaccount.com", "iat": 1 });
        let token = key.sign(Some("key-1"), &claims).unwrap();
        let (header, read) = verify(&token, &RSA_PKCS1_2048_8192_SHA256, key.public_key());
        assert_eq!(
            header,
            serde_json::json!({ "alg": "RS256", "typ": "JWT", "kid": "key-1" })
        );
        assert_eq!(read, claims);
    }

    #[test]
    fn es256_tokens_verify_with_the_public_key() {
        let key = JwtKey::es256_from_pem(&p256_pem()).unwrap();
        let claims = serde_json::json!({ "iss": "TEAM123456", "iat": 1_700_000_000 });
        let token = key.sign(Some("KEY1234567"), &claims).unwrap();
        let (header, read) = verify(&token, &ECDSA_P256_SHA256_FIXED, key.public_key());
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], "KEY1234567");
        assert_eq!(read, claims);
        // A tampered token does not verify.
        let forged = token.replacen("eyJ", "eyK", 1);
        let parts: Vec<&str> = forged.rsplitn(2, '.').collect();
        let signature = URL_SAFE_NO_PAD.decode(parts[0]).unwrap();
        assert!(
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public_key())
                .verify(parts[1].as_bytes(), &signature)
                .is_err()
        );
    }

    #[test]
    fn keys_of_the_wrong_kind_or_form_are_refused_without_being_quoted() {
        let ec = p256_pem();
        assert!(JwtKey::rs256_from_pem(&ec).unwrap_err().contains("RSA"));
        let problem =
            JwtKey::es256_from_pem("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----")
                .unwrap_err();
        assert!(problem.contains("PKCS#8"), "{problem}");
        assert!(JwtKey::es256_from_pem("not a key").unwrap_err().contains("PEM"));
        let garbled = ec.replace('A', "!");
        let problem = JwtKey::es256_from_pem(&garbled).unwrap_err();
        assert!(!problem.contains('!'), "{problem}");
        let debug = format!("{:?}", JwtKey::es256_from_pem(&ec).unwrap());
        assert_eq!(debug, "JwtKey(ES256, [redacted])");
    }
}
