//! DKIM of domain identities: Easy DKIM (weir generates three keys, one per token/selector,
//! and signs with the first), BYODKIM (the customer's key and selector), the status DNS checks
//! decide, and the signer the delivery engine asks for by the From domain.

use std::sync::Arc;

use weir_mail::dkim::{KeyPair, KeySpec, Signer};
use weir_store::model::{DkimOrigin, DkimRecord, DnsStatus};

use std::collections::HashMap;

use parking_lot::RwLock;

use super::AdminError;
use super::cluster::{Change, set_or_remove};
use super::core::Core;
use crate::catalog::RegionKey;

/// How many tokens (selectors, keys) Easy DKIM gives a domain, as SES does.
pub const EASY_DKIM_TOKENS: usize = 3;

/// A domain's DKIM as the API shows it (no private keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimView {
    /// `SigningEnabled`.
    pub enabled: bool,
    /// `AWS_SES` or `EXTERNAL`.
    pub origin: DkimOrigin,
    /// SES's `DkimStatus`.
    pub status: DnsStatus,
    /// The selectors (SES's tokens).
    pub tokens: Vec<String>,
    /// `CurrentSigningKeyLength`.
    pub key_spec: String,
    /// `NextSigningKeyLength`.
    pub next_key_spec: String,
    /// `LastKeyGenerationTimestamp`, Unix milliseconds.
    pub generated_ms: i64,
    /// The selector of the next key, signing once DNS shows its record.
    pub pending_selector: Option<String>,
}

/// What DNS showed for a domain's DKIM records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsFinding {
    /// Every selector's record publishes its key.
    AllPublished,
    /// A record is missing or publishes another key.
    Missing,
    /// DNS did not answer (timeout, SERVFAIL).
    Unavailable,
}

/// One domain's records to check: (account id, region, domain, [(selector, expected `p=`)] of
/// the keys in use, and the pending next key's if any).
pub type DkimCheck = (i64, String, String, Vec<(String, String)>, Option<(String, String)>);

/// The status after a DNS check, as SES moves it: published → `SUCCESS`; missing → `PENDING`
/// until `fail_after_ms` from generation (then `FAILED`), or, once it had succeeded,
/// `TEMPORARY_FAILURE` until `fail_after_ms` from the last success (then `FAILED`); no answer
/// from DNS → `TEMPORARY_FAILURE`. Returns the status and the last success time.
pub fn status_after(
    finding: DnsFinding,
    generated_ms: i64,
    last_success_ms: i64,
    now_ms: i64,
    fail_after_ms: i64,
) -> (DnsStatus, i64) {
    match finding {
        DnsFinding::AllPublished => (DnsStatus::Success, now_ms),
        DnsFinding::Unavailable => (DnsStatus::TemporaryFailure, last_success_ms),
        DnsFinding::Missing if last_success_ms == 0 => {
            (if now_ms - generated_ms < fail_after_ms { DnsStatus::Pending } else { DnsStatus::Failed }, 0)
        }
        DnsFinding::Missing => (
            if now_ms - last_success_ms < fail_after_ms { DnsStatus::TemporaryFailure } else { DnsStatus::Failed },
            last_success_ms,
        ),
    }
}

/// A DKIM row with the signer of its first key, ready for the delivery path.
#[derive(Debug, Clone)]
pub(crate) struct DkimEntry {
    pub(crate) record: DkimRecord,
    signer: Option<Arc<Signer>>,
}

impl DkimEntry {
    pub(crate) fn new(record: DkimRecord) -> DkimEntry {
        let signer = record.keys.first().and_then(|(selector, der)| {
            let key = KeyPair::from_der(der.clone()).ok()?;
            key.signer(&record.identity, selector).ok().map(Arc::new)
        });
        DkimEntry { record, signer }
    }

    fn view(&self) -> DkimView {
        let r = &self.record;
        DkimView {
            enabled: r.enabled,
            origin: r.origin,
            status: r.status,
            tokens: r.keys.iter().map(|(s, _)| s.clone()).collect(),
            key_spec: r.key_spec.clone(),
            next_key_spec: r.next_key_spec.clone(),
            generated_ms: r.generated_ms,
            pending_selector: r.pending.as_ref().map(|(s, _)| s.clone()),
        }
    }

    /// Signing happens once DNS has shown the records (and not after they were gone too long).
    fn signs(&self) -> bool {
        self.record.enabled && self.record.last_success_ms > 0 && self.record.status != DnsStatus::Failed
    }
}

/// A random token: 32 lower-case letters and digits, like SES's.
fn token() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    (0..32).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect()
}

/// The DKIM keys of every domain, by (account, region) and domain (one lock).
pub struct DkimKeys {
    core: Arc<Core>,
    keys: RwLock<HashMap<(RegionKey, String), DkimEntry>>,
}

impl DkimKeys {
    pub(crate) fn new(core: Arc<Core>, records: Vec<(i64, String, DkimRecord)>) -> Self {
        let keys = records
            .into_iter()
            .map(|(id, region, d)| (((id, region), d.identity.clone()), DkimEntry::new(d)))
            .collect();
        DkimKeys { core, keys: RwLock::new(keys) }
    }

    /// Store another node's DKIM change here, then mirror it in memory.
    pub(crate) async fn apply(
        &self,
        account_id: i64,
        region: String,
        domain: String,
        record: Option<DkimRecord>,
    ) -> Result<(), weir_store::StoreError> {
        match record.clone() {
            Some(rec) => self.core.accounts.put_dkim(account_id, region.clone(), rec).await?,
            None => self.core.accounts.delete_dkim(account_id, region.clone(), domain.clone()).await?,
        }
        set_or_remove(&mut self.keys.write(), ((account_id, region), domain), record.map(DkimEntry::new));
        Ok(())
    }

    /// Every domain's DKIM as changes, to publish again to an emptied Redis.
    pub(crate) fn changes(&self) -> Vec<Change> {
        let keys = self.keys.read();
        keys.iter()
            .map(|((k, domain), e)| Change::Dkim {
                account_id: k.0,
                region: k.1.clone(),
                domain: domain.clone(),
                record: Some(e.record.clone()),
            })
            .collect()
    }

    fn dkim_key(account_id: i64, region: &str, domain: &str) -> (RegionKey, String) {
        ((account_id, region.to_string()), domain.to_ascii_lowercase())
    }

    /// Whether any domain has DKIM (the delivery path skips looking otherwise).
    pub fn dkim_in_use(&self) -> bool {
        !self.keys.read().is_empty()
    }

    /// A domain's DKIM, if it has any.
    pub fn dkim(&self, account_id: i64, region: &str, domain: &str) -> Option<DkimView> {
        self.keys.read().get(&Self::dkim_key(account_id, region, domain)).map(DkimEntry::view)
    }

    async fn save_dkim(&self, account_id: i64, region: &str, record: DkimRecord) -> Result<DkimView, AdminError> {
        self.core.accounts.put_dkim(account_id, region.to_string(), record.clone()).await?;
        let shared = record.clone();
        let entry = DkimEntry::new(record);
        let view = entry.view();
        self.keys.write().insert(Self::dkim_key(account_id, region, &entry.record.identity), entry);
        let domain = shared.identity.clone();
        self.core.share(Change::Dkim { account_id, region: region.to_string(), domain, record: Some(shared) }).await;
        Ok(view)
    }

    /// Easy DKIM for a domain: three keys of `spec`, one per token, status `PENDING` until DNS
    /// shows them. A domain that already has Easy DKIM keeps its tokens (SES answers
    /// `VerifyDomainDkim` with the same ones).
    pub async fn start_easy_dkim(
        &self,
        account_id: i64,
        region: &str,
        domain: &str,
        spec: KeySpec,
    ) -> Result<DkimView, AdminError> {
        if let Some(v) = self.dkim(account_id, region, domain).filter(|v| v.origin == DkimOrigin::AwsSes) {
            return Ok(v);
        }
        // Key generation is CPU work (RSA: tens of milliseconds each): off the async workers.
        let keys = tokio::task::spawn_blocking(move || {
            (0..EASY_DKIM_TOKENS)
                .map(|_| KeyPair::generate(spec).map(|k| (token(), k.private_der)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| AdminError::Invalid(format!("key generation stopped: {e}")))?
        .map_err(|e| AdminError::Invalid(e.to_string()))?;
        let record = DkimRecord {
            identity: domain.to_ascii_lowercase(),
            enabled: true,
            origin: DkimOrigin::AwsSes,
            status: DnsStatus::Pending,
            keys,
            key_spec: spec.as_str().into(),
            next_key_spec: spec.as_str().into(),
            generated_ms: self.core.now_ms(),
            last_success_ms: 0,
            pending: None,
        };
        self.save_dkim(account_id, region, record).await
    }

    /// Rotate an Easy DKIM domain's key: a new key of the next length under a new token waits
    /// (pending) until DNS shows its record, then signs, and the oldest key is dropped.
    pub async fn rotate_dkim(&self, account_id: i64, region: &str, domain: &str) -> Result<DkimView, AdminError> {
        let Some(mut record) =
            self.keys.read().get(&Self::dkim_key(account_id, region, domain)).map(|e| e.record.clone())
        else {
            return Err(AdminError::NotFound(format!("{domain} has no DKIM keys to rotate")));
        };
        if record.origin != DkimOrigin::AwsSes {
            return Err(AdminError::Invalid(format!(
                "{domain} signs with the customer's key (EXTERNAL): rotate it with PutEmailIdentityDkimSigningAttributes"
            )));
        }
        let spec = KeySpec::parse(&record.next_key_spec).unwrap_or(KeySpec::Rsa2048);
        let key = tokio::task::spawn_blocking(move || KeyPair::generate(spec))
            .await
            .map_err(|e| AdminError::Invalid(format!("key generation stopped: {e}")))?
            .map_err(|e| AdminError::Invalid(e.to_string()))?;
        record.pending = Some((token(), key.private_der));
        self.save_dkim(account_id, region, record).await
    }

    /// BYODKIM: the customer's private key (base64 DER) under their selector.
    pub async fn put_external_dkim(
        &self,
        account_id: i64,
        region: &str,
        domain: &str,
        selector: &str,
        private_key_b64: &str,
    ) -> Result<DkimView, AdminError> {
        let key = KeyPair::from_base64(private_key_b64).map_err(|e| AdminError::Invalid(e.to_string()))?;
        // A domain already signing with the customer's key keeps signing with it until DNS shows
        // the new selector's record: the new key waits as the pending one.
        let current = self.keys.read().get(&Self::dkim_key(account_id, region, domain)).cloned();
        if let Some(e) = current.filter(|e| e.signs() && e.record.origin == DkimOrigin::External) {
            let mut record = e.record;
            record.pending = Some((selector.to_string(), key.private_der));
            return self.save_dkim(account_id, region, record).await;
        }
        let record = DkimRecord {
            identity: domain.to_ascii_lowercase(),
            enabled: true,
            origin: DkimOrigin::External,
            status: DnsStatus::Pending,
            keys: vec![(selector.to_string(), key.private_der)],
            key_spec: key.spec.as_str().into(),
            next_key_spec: key.spec.as_str().into(),
            generated_ms: self.core.now_ms(),
            last_success_ms: 0,
            pending: None,
        };
        self.save_dkim(account_id, region, record).await
    }

    /// `SigningEnabled` of a domain with DKIM.
    pub async fn set_dkim_enabled(
        &self,
        account_id: i64,
        region: &str,
        domain: &str,
        enabled: bool,
    ) -> Result<DkimView, AdminError> {
        let Some(mut record) =
            self.keys.read().get(&Self::dkim_key(account_id, region, domain)).map(|e| e.record.clone())
        else {
            return Err(AdminError::Invalid(format!("Domain {domain} is not verified for DKIM signing.")));
        };
        record.enabled = enabled;
        self.save_dkim(account_id, region, record).await
    }

    /// Forget a domain's DKIM (its identity was deleted).
    pub(crate) async fn delete_dkim(&self, account_id: i64, region: &str, domain: &str) -> Result<(), AdminError> {
        self.core.accounts.delete_dkim(account_id, region.to_string(), domain.to_ascii_lowercase()).await?;
        self.keys.write().remove(&Self::dkim_key(account_id, region, domain));
        let domain = domain.to_ascii_lowercase();
        self.core.share(Change::Dkim { account_id, region: region.to_string(), domain, record: None }).await;
        Ok(())
    }

    /// The TXT records a domain's DKIM needs: (name, value).
    pub fn dkim_dns_records(&self, account_id: i64, region: &str, domain: &str) -> Vec<(String, String)> {
        let map = self.keys.read();
        let Some(e) = map.get(&Self::dkim_key(account_id, region, domain)) else { return vec![] };
        e.record
            .keys
            .iter()
            .chain(e.record.pending.iter())
            .filter_map(|(s, der)| {
                let key = KeyPair::from_der(der.clone()).ok()?;
                Some((format!("{s}._domainkey.{}", e.record.identity), key.dns_record()))
            })
            .collect()
    }

    /// Every domain's records for the DNS check.
    pub fn dkim_checks(&self) -> Vec<DkimCheck> {
        self.keys
            .read()
            .iter()
            .map(|(((account_id, region), domain), e)| {
                let public = |(s, der): &(String, Vec<u8>)| {
                    KeyPair::from_der(der.clone()).ok().map(|k| (s.clone(), k.public_b64))
                };
                let records = e.record.keys.iter().filter_map(public).collect();
                let pending = e.record.pending.as_ref().and_then(public);
                (*account_id, region.clone(), domain.clone(), records, pending)
            })
            .collect()
    }

    /// Apply a DNS check's finding (see [`status_after`]); returns the new status when it changed.
    pub async fn record_dkim_check(
        &self,
        account_id: i64,
        region: &str,
        domain: &str,
        finding: DnsFinding,
        pending_published: bool,
        fail_after_ms: i64,
    ) -> Result<Option<String>, AdminError> {
        let Some(mut record) =
            self.keys.read().get(&Self::dkim_key(account_id, region, domain)).map(|e| e.record.clone())
        else {
            return Ok(None);
        };
        let (status, last) =
            status_after(finding, record.generated_ms, record.last_success_ms, self.core.now_ms(), fail_after_ms);
        // DNS shows the next key: it signs from now on (Easy DKIM keeps three keys; a customer's
        // key replaces the old one).
        if pending_published && let Some(next) = record.pending.take() {
            if let Ok(k) = KeyPair::from_der(next.1.clone()) {
                record.key_spec = k.spec.as_str().into();
            }
            record.keys.insert(0, next);
            record.keys.truncate(if record.origin == DkimOrigin::AwsSes { EASY_DKIM_TOKENS } else { 1 });
            record.generated_ms = self.core.now_ms();
            record.status = status;
            record.last_success_ms = last;
            self.save_dkim(account_id, region, record).await?;
            return Ok(Some(format!("{status} (now signing with the new key)")));
        }
        let changed = record.status != status;
        // The last success moves on every good check; it is only written when the status
        // changes or it is the first, so that checks do not rewrite every row each time.
        if !changed && (record.last_success_ms != 0 || last == 0) {
            if let Some(e) = self.keys.write().get_mut(&Self::dkim_key(account_id, region, domain)) {
                e.record.last_success_ms = last;
            }
            return Ok(None);
        }
        record.status = status;
        record.last_success_ms = last;
        self.save_dkim(account_id, region, record).await?;
        Ok(changed.then(|| status.to_string()))
    }

    /// The signer for mail from `from_domain` (or its closest parent domain with DKIM) in
    /// (account, region), when that domain's DKIM signs.
    pub fn dkim_signer(&self, account_id: i64, region: &str, from_domain: &str) -> Option<Arc<Signer>> {
        let map = self.keys.read();
        let key = (account_id, region.to_string());
        let mut domain = from_domain.to_ascii_lowercase();
        loop {
            if let Some(e) = map.get(&(key.clone(), domain.clone())) {
                return if e.signs() { e.signer.clone() } else { None };
            }
            match domain.split_once('.') {
                Some((_, parent)) if parent.contains('.') => domain = parent.to_string(),
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn published_records_succeed_and_missing_ones_stay_pending_then_fail() {
        assert_eq!(status_after(DnsFinding::AllPublished, 0, 0, 5, 3 * DAY), (DnsStatus::Success, 5));
        assert_eq!(status_after(DnsFinding::Missing, 0, 0, DAY, 3 * DAY), (DnsStatus::Pending, 0));
        assert_eq!(status_after(DnsFinding::Missing, 0, 0, 3 * DAY, 3 * DAY), (DnsStatus::Failed, 0));
    }

    #[test]
    fn records_removed_after_success_are_a_temporary_failure_then_a_failure() {
        assert_eq!(status_after(DnsFinding::Missing, 0, DAY, 2 * DAY, 3 * DAY), (DnsStatus::TemporaryFailure, DAY));
        assert_eq!(status_after(DnsFinding::Missing, 0, DAY, 4 * DAY, 3 * DAY), (DnsStatus::Failed, DAY));
        assert_eq!(status_after(DnsFinding::Unavailable, 0, DAY, 2 * DAY, 3 * DAY), (DnsStatus::TemporaryFailure, DAY));
    }
}
