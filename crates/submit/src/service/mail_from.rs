//! Custom MAIL FROM domains, as SES has them: a subdomain of the identity whose MX must point at
//! weir's feedback listener; while DNS shows it, mail from the identity leaves with return paths
//! at that domain; when it does not, mail uses the default return path (`USE_DEFAULT_VALUE`) or
//! is refused (`REJECT_MESSAGE`).

use weir_store::model::{DnsStatus, MailFromBehavior, MailFromRecord};

use super::dkim::{DnsFinding, status_after};
use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use super::cluster::{Change, set_or_remove};
use super::core::Core;
use super::{AdminError, SubmitError};
use crate::catalog::RegionKey;

/// An identity's MAIL FROM domain as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailFromView {
    /// The domain.
    pub domain: String,
    /// `USE_DEFAULT_VALUE` or `REJECT_MESSAGE`.
    pub behavior: MailFromBehavior,
    /// `PENDING`, `SUCCESS`, `FAILED`, `TEMPORARY_FAILURE`.
    pub status: DnsStatus,
}

/// One MAIL FROM domain to check: (account id, region, identity, domain).
pub type MailFromCheck = (i64, String, String, String);

/// Custom MAIL FROM domains by (account, region) and identity (one lock), and the return paths
/// they and the default domain give.
pub struct MailFromDomains {
    core: Arc<Core>,
    domains: RwLock<HashMap<(RegionKey, String), MailFromRecord>>,
    /// Default return-path domain (if any) and the key of return-path tags, when mail comes
    /// back to weir.
    return_path: Option<(Option<String>, Vec<u8>)>,
    /// Host name of the feedback listener: MAIL FROM domains' MX must name it.
    feedback_mx_host: Option<String>,
}

impl MailFromDomains {
    pub(crate) fn new(
        core: Arc<Core>,
        records: Vec<(i64, String, MailFromRecord)>,
        return_path: Option<(Option<String>, Vec<u8>)>,
        feedback_mx_host: Option<String>,
    ) -> Self {
        let domains = records.into_iter().map(|(id, region, m)| (((id, region), m.identity.clone()), m)).collect();
        let feedback_mx_host = feedback_mx_host.map(|h| h.trim_end_matches('.').to_ascii_lowercase());
        MailFromDomains { core, domains: RwLock::new(domains), return_path, feedback_mx_host }
    }

    /// Store another node's MAIL FROM change here, then mirror it in memory.
    pub(crate) async fn apply(
        &self,
        account_id: i64,
        region: String,
        identity: String,
        record: Option<MailFromRecord>,
    ) -> Result<(), weir_store::StoreError> {
        match record.clone() {
            Some(rec) => self.core.accounts.put_mail_from(account_id, region.clone(), rec).await?,
            None => self.core.accounts.delete_mail_from(account_id, region.clone(), identity.clone()).await?,
        }
        set_or_remove(&mut self.domains.write(), ((account_id, region), identity), record);
        Ok(())
    }

    /// Every MAIL FROM domain as changes, to publish again to an emptied Redis.
    pub(crate) fn changes(&self) -> Vec<Change> {
        let domains = self.domains.read();
        domains
            .iter()
            .map(|((k, identity), m)| Change::MailFrom {
                account_id: k.0,
                region: k.1.clone(),
                identity: identity.clone(),
                record: Some(m.clone()),
            })
            .collect()
    }

    /// The key of return-path tags, when mail comes back to weir.
    pub(crate) fn return_path_secret(&self) -> Option<&[u8]> {
        self.return_path.as_ref().map(|(_, s)| s.as_slice())
    }

    /// The feedback listener's host name, which MAIL FROM domains' MX records must name.
    pub fn feedback_mx_host(&self) -> Option<&str> {
        self.feedback_mx_host.as_deref()
    }

    /// Set (or, with `None`, clear) an identity's MAIL FROM domain, with SES's rule: a subdomain
    /// of the identity's domain.
    pub async fn set_mail_from(
        &self,
        account_id: i64,
        region: &str,
        identity: &str,
        domain: Option<&str>,
        behavior: MailFromBehavior,
    ) -> Result<Option<MailFromView>, AdminError> {
        let ident = identity.to_ascii_lowercase();
        let Some(domain) = domain.filter(|d| !d.is_empty()).map(str::to_ascii_lowercase) else {
            self.core.accounts.delete_mail_from(account_id, region.to_string(), ident.clone()).await?;
            self.domains.write().remove(&((account_id, region.to_string()), ident.clone()));
            let region = region.to_string();
            self.core.share(Change::MailFrom { account_id, region, identity: ident, record: None }).await;
            return Ok(None);
        };
        let parent = ident.rsplit_once('@').map_or(ident.as_str(), |(_, d)| d);
        if !domain.ends_with(&format!(".{parent}")) || domain.split('.').any(|l| l.is_empty()) {
            return Err(AdminError::Invalid(format!(
                "Provided MAIL-FROM domain '{domain}' is not subdomain of the domain of the identity '{identity}'."
            )));
        }
        let record = MailFromRecord {
            identity: ident.clone(),
            domain,
            behavior,
            status: DnsStatus::Pending,
            set_ms: self.core.now_ms(),
            last_success_ms: 0,
        };
        self.core.accounts.put_mail_from(account_id, region.to_string(), record.clone()).await?;
        let view = view(&record);
        self.domains.write().insert(((account_id, region.to_string()), ident.clone()), record.clone());
        let region = region.to_string();
        self.core.share(Change::MailFrom { account_id, region, identity: ident, record: Some(record) }).await;
        Ok(Some(view))
    }

    /// An identity's MAIL FROM domain, if set.
    pub fn mail_from(&self, account_id: i64, region: &str, identity: &str) -> Option<MailFromView> {
        self.domains.read().get(&((account_id, region.to_string()), identity.to_ascii_lowercase())).map(view)
    }

    /// Every MAIL FROM domain, for the DNS check.
    pub fn mail_from_checks(&self) -> Vec<MailFromCheck> {
        self.domains.read().iter().map(|((k, ident), m)| (k.0, k.1.clone(), ident.clone(), m.domain.clone())).collect()
    }

    /// Apply a DNS check of the MX record (see [`status_after`]); returns the new status when it
    /// changed.
    pub async fn record_mail_from_check(
        &self,
        account_id: i64,
        region: &str,
        identity: &str,
        finding: DnsFinding,
        fail_after_ms: i64,
    ) -> Result<Option<String>, AdminError> {
        let key = ((account_id, region.to_string()), identity.to_string());
        let Some(mut record) = self.domains.read().get(&key).cloned() else { return Ok(None) };
        let (status, last) =
            status_after(finding, record.set_ms, record.last_success_ms, self.core.now_ms(), fail_after_ms);
        if record.status == status {
            if let Some(m) = self.domains.write().get_mut(&key) {
                m.last_success_ms = last;
            }
            return Ok(None);
        }
        record.status = status;
        record.last_success_ms = last;
        self.core.accounts.put_mail_from(account_id, region.to_string(), record.clone()).await?;
        self.domains.write().insert(key, record.clone());
        let (region, identity) = (region.to_string(), record.identity.clone());
        self.core.share(Change::MailFrom { account_id, region, identity, record: Some(record) }).await;
        Ok(Some(status.to_string()))
    }

    /// The MAIL FROM setting that governs mail from `source`: the address's own identity, else
    /// its domain's (or a parent domain's).
    fn mail_from_for(&self, account_id: i64, region: &str, source: &str) -> Option<MailFromRecord> {
        let map = self.domains.read();
        let key = (account_id, region.to_string());
        let addr = source.to_ascii_lowercase();
        if let Some(m) = map.get(&(key.clone(), addr.clone())) {
            return Some(m.clone());
        }
        let mut domain = addr.rsplit_once('@').map(|(_, d)| d.to_string())?;
        loop {
            if let Some(m) = map.get(&(key.clone(), domain.clone())) {
                return Some(m.clone());
            }
            match domain.split_once('.') {
                Some((_, parent)) if parent.contains('.') => domain = parent.to_string(),
                _ => return None,
            }
        }
    }

    /// SES's refusal of a send whose MAIL FROM domain is not set up while its identity asks for
    /// `REJECT_MESSAGE`.
    pub(crate) fn check_mail_from(&self, account_id: i64, region: &str, source: &str) -> Result<(), SubmitError> {
        if self.domains.read().is_empty() {
            return Ok(());
        }
        match self.mail_from_for(account_id, region, source) {
            Some(m) if m.behavior == MailFromBehavior::RejectMessage && m.status != DnsStatus::Success => {
                Err(SubmitError::MessageRejected(format!(
                    "The MAIL FROM domain {} of {source} is not verified (MX record not found).",
                    m.domain
                )))
            }
            _ => Ok(()),
        }
    }

    /// The domain of the return paths of mail from `source`: the identity's MAIL FROM domain
    /// while DNS shows it, else the default return-path domain; `None` when neither exists (the
    /// Source stays the envelope sender).
    pub fn return_path_domain(&self, account_id: i64, region: &str, source: &str) -> Option<String> {
        let (default, _) = self.return_path.as_ref()?;
        let custom = if self.domains.read().is_empty() {
            None
        } else {
            self.mail_from_for(account_id, region, source).filter(|m| m.status == DnsStatus::Success).map(|m| m.domain)
        };
        custom.or_else(|| default.clone())
    }

    /// The envelope sender for recipient `idx` of a message from `source`, at its return-path
    /// domain ([`MailFromDomains::return_path_domain`]).
    pub fn return_path_for(
        &self,
        account_id: i64,
        region: &str,
        source: &str,
        message_id: &str,
        idx: i64,
    ) -> Option<String> {
        let domain = self.return_path_domain(account_id, region, source)?;
        let (_, secret) = self.return_path.as_ref()?;
        Some(weir_mail::feedback::return_path(message_id, idx, &domain, secret))
    }

    /// Every domain whose return paths come back to the feedback listener.
    pub(crate) fn return_path_domains(&self) -> Vec<String> {
        let mut v: Vec<String> = self.domains.read().values().map(|m| m.domain.clone()).collect();
        if let Some(d) = self.return_path.as_ref().and_then(|(d, _)| d.clone()) {
            v.push(d);
        }
        v
    }
}

fn view(m: &MailFromRecord) -> MailFromView {
    MailFromView { domain: m.domain.clone(), behavior: m.behavior, status: m.status }
}
