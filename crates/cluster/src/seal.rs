//! The cluster key: a secret every node of one cluster holds (`[cluster] key_file`), which
//! Redis never sees. Catalog entries are sealed with it (AES-256-GCM, the writing node and its
//! clock authenticated with them), so that whoever reaches Redis can neither read the tenants'
//! secret keys and DKIM keys in the stream nor add an entry the nodes would apply; and the keys
//! of links and return paths are derived from it, so that any node honours what another made.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;

/// Fewest bytes a cluster key may have.
pub const MIN_KEY_BYTES: usize = 32;

/// Why a sealed entry was not opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Not made with this cluster's key, or changed since.
    #[error("not sealed with this cluster's key (forged, altered, or from another cluster)")]
    Forged,
    /// Not in the sealed form at all.
    #[error("malformed sealed entry")]
    Malformed,
}

/// AES-256-GCM under one key: what it seals, only its holder can read or make.
#[derive(Clone)]
pub struct Sealer(std::sync::Arc<LessSafeKey>);

impl Sealer {
    /// A sealer whose key is derived from `secret` for `purpose` (HMAC-SHA256).
    pub fn derived(secret: &[u8], purpose: &str) -> Sealer {
        let k = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), purpose.as_bytes());
        // 32 bytes, exactly what AES-256 takes: `new` cannot fail.
        let unbound = UnboundKey::new(&AES_256_GCM, k.as_ref()).unwrap_or_else(|_| unreachable!("32-byte key"));
        Sealer(std::sync::Arc::new(LessSafeKey::new(unbound)))
    }

    /// nonce ‖ ciphertext ‖ tag of `plain`, with `aad` authenticated alongside.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        // The system's generator does not fail on the platforms weir runs on; a zero nonce
        // would still be authenticated, only no longer unique.
        let _ = SystemRandom::new().fill(&mut nonce);
        let mut buf = plain.to_vec();
        if self.0.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf).is_err() {
            // Only for inputs over GCM's limit (64 GiB), which nothing here comes near.
            buf.clear();
        }
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        out
    }

    /// What [`Sealer::seal`] sealed with `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(SealError::Malformed);
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Malformed)?;
        let mut buf = rest.to_vec();
        let plain = self.0.open_in_place(nonce, Aad::from(aad), &mut buf).map_err(|_| SealError::Forged)?;
        Ok(plain.to_vec())
    }
}

/// The cluster key.
#[derive(Clone)]
pub struct ClusterKey {
    catalog: Sealer,
    root: hmac::Key,
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(…)")
    }
}

impl ClusterKey {
    /// The key from its bytes (at least [`MIN_KEY_BYTES`]).
    pub fn new(bytes: &[u8]) -> Result<ClusterKey, String> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!("a cluster key has at least {MIN_KEY_BYTES} bytes; this one has {}", bytes.len()));
        }
        let root = hmac::Key::new(hmac::HMAC_SHA256, bytes);
        Ok(ClusterKey { catalog: Sealer::derived(bytes, "weir cluster: catalog sealing"), root })
    }

    /// A key for `purpose` (return paths, links…), the same on every node of the cluster.
    pub fn derive(&self, purpose: &str) -> Vec<u8> {
        hmac::sign(&self.root, format!("weir cluster: {purpose}").as_bytes()).as_ref().to_vec()
    }

    /// Seal `text`, written by `node` at `ts` (both authenticated, not hidden): base64 of
    /// nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, node: &str, ts: u64, text: &str) -> String {
        let sealed = self.catalog.seal(aad(node, ts).as_bytes(), text.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(sealed)
    }

    /// Open what [`ClusterKey::seal`] made for `node` at `ts`.
    pub fn open(&self, node: &str, ts: u64, sealed: &str) -> Result<String, SealError> {
        let raw = base64::engine::general_purpose::STANDARD.decode(sealed).map_err(|_| SealError::Malformed)?;
        let plain = self.catalog.open(aad(node, ts).as_bytes(), &raw)?;
        String::from_utf8(plain).map_err(|_| SealError::Malformed)
    }
}

fn aad(node: &str, ts: u64) -> String {
    format!("weir-catalog-v1\n{node}\n{ts}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> ClusterKey {
        ClusterKey::new(&[b; 32]).expect("key")
    }

    #[test]
    fn a_sealed_entry_opens_with_its_node_and_time_only() {
        let k = key(1);
        let s = k.seal("n1", 42, "{\"secret\":\"x\"}");
        assert!(!s.contains("secret"));
        assert_eq!(k.open("n1", 42, &s).as_deref(), Ok("{\"secret\":\"x\"}"));
        assert_eq!(k.open("n2", 42, &s), Err(SealError::Forged), "another node's name");
        assert_eq!(k.open("n1", 43, &s), Err(SealError::Forged), "another time");
        assert_eq!(key(2).open("n1", 42, &s), Err(SealError::Forged), "another cluster's key");
        assert_eq!(k.open("n1", 42, "{\"change\":1}"), Err(SealError::Malformed));
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_agree_across_nodes() {
        assert_eq!(key(1).derive("return paths"), key(1).derive("return paths"));
        assert_ne!(key(1).derive("return paths"), key(1).derive("links"));
        assert!(ClusterKey::new(&[0; 16]).is_err());
    }
}
