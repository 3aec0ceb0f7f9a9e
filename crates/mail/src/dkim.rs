//! DKIM (RFC 6376, RFC 8463): signing keys generated or brought by the customer, the DNS record
//! that publishes each, and the signature weir puts on outgoing mail (`mail-auth`'s signer,
//! relaxed/relaxed, SHA-256).

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::signature::KeyPair as _;
use mail_auth::common::crypto::{Algorithm, DkimKey, Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::{DkimSigner, Done};
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
use rsa::traits::PublicKeyParts as _;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer};

/// Headers signed when present (SES signs the same kind of set): the ones a receiver shows or
/// threads on, and the list-management headers that must not be changed in transit.
pub const SIGNED_HEADERS: [&str; 16] = [
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "To",
    "Cc",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-ID",
    "Content-Description",
    "In-Reply-To",
    "References",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// A key's algorithm and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    /// RSA, 1024 bits (SES's `RSA_1024_BIT`).
    Rsa1024,
    /// RSA, 2048 bits (SES's `RSA_2048_BIT`, the default).
    Rsa2048,
    /// Ed25519 (RFC 8463); not an SES key length, a weir extension.
    Ed25519,
}

impl KeySpec {
    /// SES's `DkimSigningKeyLength` spelling (`ED25519` for the extension).
    pub fn as_str(self) -> &'static str {
        match self {
            KeySpec::Rsa1024 => "RSA_1024_BIT",
            KeySpec::Rsa2048 => "RSA_2048_BIT",
            KeySpec::Ed25519 => "ED25519",
        }
    }

    /// The spelling back.
    pub fn parse(s: &str) -> Option<KeySpec> {
        match s {
            "RSA_1024_BIT" => Some(KeySpec::Rsa1024),
            "RSA_2048_BIT" => Some(KeySpec::Rsa2048),
            "ED25519" => Some(KeySpec::Ed25519),
            _ => None,
        }
    }
}

/// What went wrong with a key.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    /// The crypto library could not generate a key.
    #[error("could not generate a DKIM key")]
    Generate,
    /// A supplied private key is not base64 DER (PKCS#1 or PKCS#8) of an RSA or Ed25519 key.
    #[error("the private key is not a base64-encoded DER RSA (PKCS#1 or PKCS#8) or Ed25519 (PKCS#8) key")]
    BadKey,
    /// RSA keys under 1024 bits are refused by receivers (RFC 8301).
    #[error("the RSA key has {0} bits; DKIM needs at least 1024")]
    WeakKey(usize),
    /// Signing failed (no signed header present, …).
    #[error("DKIM signing failed: {0}")]
    Sign(String),
}

/// A private key (DER as stored) with the public half as DNS publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPair {
    /// Algorithm and size.
    pub spec: KeySpec,
    /// PKCS#8 DER (or PKCS#1 for a supplied RSA key).
    pub private_der: Vec<u8>,
    /// The `p=` value: base64 of the SubjectPublicKeyInfo (RSA) or the raw key (Ed25519).
    pub public_b64: String,
}

impl KeyPair {
    /// A new key.
    pub fn generate(spec: KeySpec) -> Result<KeyPair, DkimError> {
        match spec {
            KeySpec::Rsa2048 => {
                let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(|_| DkimError::Generate)?;
                let private: Pkcs8V1Der = key.as_der().map_err(|_| DkimError::Generate)?;
                KeyPair::from_der(private.as_ref().to_vec())
            }
            // aws-lc generates RSA from 2048 bits up; SES still offers 1024.
            KeySpec::Rsa1024 => {
                let key =
                    mail_auth::dkim::generate::DkimKeyPair::generate_rsa(1024).map_err(|_| DkimError::Generate)?;
                KeyPair::from_der(key.private_key().to_vec())
            }
            KeySpec::Ed25519 => {
                let doc = Ed25519Key::generate_pkcs8().map_err(|_| DkimError::Generate)?;
                let key = Ed25519Key::from_pkcs8_der(&doc).map_err(|_| DkimError::Generate)?;
                Ok(KeyPair { spec, private_der: doc, public_b64: b64(&key.public_key()) })
            }
        }
    }

    /// A key the customer brings (BYODKIM): base64 of its DER, as SES takes it.
    pub fn from_base64(private_b64: &str) -> Result<KeyPair, DkimError> {
        use base64::Engine as _;
        let der = base64::engine::general_purpose::STANDARD
            .decode(private_b64.trim().as_bytes())
            .map_err(|_| DkimError::BadKey)?;
        Self::from_der(der)
    }

    /// A stored or supplied DER key: RSA (PKCS#1 or PKCS#8) or Ed25519 (PKCS#8).
    pub fn from_der(der: Vec<u8>) -> Result<KeyPair, DkimError> {
        // aws-lc takes RSA keys of 2048 bits and more; smaller ones go to the `rsa` crate.
        let rsa = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).or_else(|_| aws_lc_rs::rsa::KeyPair::from_der(&der));
        if let Ok(key) = rsa {
            let public: PublicKeyX509Der = key.public_key().as_der().map_err(|_| DkimError::BadKey)?;
            return Ok(KeyPair { spec: KeySpec::Rsa2048, public_b64: b64(public.as_ref()), private_der: der });
        }
        if let Ok(key) = rsa::RsaPrivateKey::from_pkcs1_der(&der).or_else(|_| rsa::RsaPrivateKey::from_pkcs8_der(&der))
        {
            let bits = key.size() * 8;
            if bits < 1024 {
                return Err(DkimError::WeakKey(bits));
            }
            let public = key.to_public_key().to_public_key_der().map_err(|_| DkimError::BadKey)?;
            return Ok(KeyPair { spec: KeySpec::Rsa1024, public_b64: b64(public.as_bytes()), private_der: der });
        }
        let key = Ed25519Key::from_pkcs8_maybe_unchecked_der(&der).map_err(|_| DkimError::BadKey)?;
        Ok(KeyPair { spec: KeySpec::Ed25519, public_b64: b64(&key.public_key()), private_der: der })
    }

    /// The TXT record to publish at `<selector>._domainkey.<domain>`.
    pub fn dns_record(&self) -> String {
        let k = if self.spec == KeySpec::Ed25519 { "ed25519" } else { "rsa" };
        format!("v=DKIM1; k={k}; p={}", self.public_b64)
    }

    /// A signer for `domain` under `selector` (parsing the key once; keep it for many messages).
    pub fn signer(&self, domain: &str, selector: &str) -> Result<Signer, DkimError> {
        let key = match self.spec {
            KeySpec::Ed25519 => Key::Lc(DkimKey::Ed25519(
                Ed25519Key::from_pkcs8_maybe_unchecked_der(&self.private_der).map_err(|_| DkimError::BadKey)?,
            )),
            KeySpec::Rsa2048 => {
                let der = if aws_lc_rs::rsa::KeyPair::from_pkcs8(&self.private_der).is_ok() {
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.private_der.clone()))
                } else {
                    PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(self.private_der.clone()))
                };
                Key::Lc(DkimKey::Rsa(RsaKey::<Sha256>::from_key_der(der).map_err(|_| DkimError::BadKey)?))
            }
            KeySpec::Rsa1024 => Key::Small(Box::new(
                rsa::RsaPrivateKey::from_pkcs1_der(&self.private_der)
                    .or_else(|_| rsa::RsaPrivateKey::from_pkcs8_der(&self.private_der))
                    .map_err(|_| DkimError::BadKey)?,
            )),
        };
        Ok(Signer(DkimSigner::from_key(key).domain(domain).selector(selector).headers(SIGNED_HEADERS)))
    }
}

/// A signing key: aws-lc's (RSA from 2048 bits, Ed25519), or the `rsa` crate's for the RSA keys
/// under 2048 bits that aws-lc refuses.
pub enum Key {
    /// RSA ≥ 2048 or Ed25519.
    Lc(DkimKey),
    /// RSA 1024–2047.
    Small(Box<rsa::RsaPrivateKey>),
}

/// DER DigestInfo prefix of a SHA-256 hash (RFC 8017 §9.2), for PKCS#1 v1.5 signatures.
const SHA256_DIGEST_INFO: [u8; 19] =
    [0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20];

impl SigningKey for Key {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        match self {
            Key::Lc(k) => k.sign(input),
            Key::Small(k) => {
                let mut data = Vec::with_capacity(512);
                input.write(&mut data);
                let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data);
                let scheme = rsa::Pkcs1v15Sign { hash_len: Some(32), prefix: SHA256_DIGEST_INFO.into() };
                k.sign(scheme, hash.as_ref()).map_err(|e| {
                    mail_auth::Error::Crypto(mail_auth::common::crypto::CryptoError::Library(e.to_string()))
                })
            }
        }
    }

    fn algorithm(&self) -> Algorithm {
        match self {
            Key::Lc(k) => k.algorithm(),
            Key::Small(_) => Algorithm::RsaSha256,
        }
    }
}

/// A ready signer for one (domain, selector, key).
pub struct Signer(DkimSigner<Key, Done>);

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer(d={}, s={})", self.0.template.d, self.0.template.s)
    }
}

impl Signer {
    /// The `DKIM-Signature` header field (with its CRLF) for `message`, to put in front of it.
    pub fn sign(&self, message: &[u8]) -> Result<String, DkimError> {
        self.0.sign(message).map(|s| s.to_header()).map_err(|e| DkimError::Sign(e.to_string()))
    }

    /// `message` with the signature in front of it.
    pub fn signed(&self, message: &[u8]) -> Result<Vec<u8>, DkimError> {
        let header = self.sign(message)?;
        let mut out = Vec::with_capacity(header.len() + message.len());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(message);
        Ok(out)
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The domain of the first address in the `From` header of `message`, lower-cased.
pub fn from_domain(message: &[u8]) -> Option<String> {
    let parsed = mail_parser::MessageParser::new().parse_headers(message)?;
    let from = parsed.from()?.first()?.address()?;
    from.rsplit_once('@').map(|(_, d)| d.trim_end_matches('>').to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"From: Ann <ann@acme.test>\r\nTo: bob@example.test\r\nSubject: hi\r\n\r\nhello\r\n";

    #[test]
    fn a_generated_key_signs_with_its_domain_selector_and_signed_headers() {
        for spec in [KeySpec::Rsa1024, KeySpec::Rsa2048, KeySpec::Ed25519] {
            let key = KeyPair::generate(spec).expect("generate");
            let header = key.signer("acme.test", "sel1").expect("signer").sign(MSG).expect("sign");
            assert!(header.starts_with("DKIM-Signature: "), "{header}");
            assert!(header.ends_with("\r\n"), "{header}");
            let unfolded = header.replace("\r\n\t", "").replace("\r\n ", "");
            assert!(unfolded.contains("d=acme.test;") && unfolded.contains("s=sel1;"), "{unfolded}");
            let h = unfolded.split("h=").nth(1).and_then(|t| t.split(';').next()).expect("h=");
            assert!(["From", "To", "Subject"].iter().all(|n| h.split(':').any(|x| x == *n)), "{h}");
            let a = if spec == KeySpec::Ed25519 { "a=ed25519-sha256;" } else { "a=rsa-sha256;" };
            assert!(unfolded.contains(a), "{unfolded}");
        }
    }

    #[test]
    fn a_stored_key_reads_back_with_the_same_public_half() {
        for spec in [KeySpec::Rsa1024, KeySpec::Rsa2048, KeySpec::Ed25519] {
            let key = KeyPair::generate(spec).expect("generate");
            let again = KeyPair::from_der(key.private_der.clone()).expect("read back");
            assert_eq!(again, key);
        }
    }

    #[test]
    fn a_supplied_key_must_be_base64_der() {
        assert!(matches!(KeyPair::from_base64("not base64!"), Err(DkimError::BadKey)));
        assert!(matches!(KeyPair::from_base64("AAAA"), Err(DkimError::BadKey)));
    }

    #[test]
    fn the_from_domain_is_read_from_the_header() {
        assert_eq!(from_domain(MSG).as_deref(), Some("acme.test"));
        assert_eq!(from_domain(b"Subject: x\r\n\r\nbody").as_deref(), None);
    }
}
