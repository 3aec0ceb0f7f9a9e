//! [`Service`]: admin, identity, suppression and send operations over the catalog, the quota
//! engine and the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use rand::Rng;
use weir_mail::address::Mailbox;
use weir_quota::{Limits, QuotaState};
use weir_store::model::*;
use weir_store::{Accounts, Documents, Ledger, Spool, Store, StoreError};

use crate::catalog::{Catalog, RegionKey};
use crate::region_upper;
use crate::reputation;

mod accept;
mod accounts;
mod cluster;
mod contacts;
mod dkim;
mod feedback;
mod identities;
mod mail_from;
mod queue;
mod resources;
mod send;
mod senders;
mod suppression;
mod tags;
mod verification;
pub use cluster::{ClusterConfig, ClusterStatus, FOLLOW_INTERVAL, Shared, stored_node_name};
pub use contacts::{Contact, ContactList, ListManagement, MAX_CONTACT_LISTS, Topic, status_for as contact_status};
pub use dkim::{DkimCheck, DkimView, DnsFinding, EASY_DKIM_TOKENS, status_after};
pub use feedback::{COMPLAINTS_LOCAL_PART, FeedbackTarget};
pub use mail_from::{MailFromCheck, MailFromView};
pub use resources::{ConfigurationSet, EventDestination, StoredTemplate};
pub use send::{
    BulkEntry, Content, MAX_BULK_DESTINATIONS, Outgoing, TemplateSource, V1_MAX_MESSAGE, V2_MAX_MESSAGE, check_tags,
};
pub use tags::{IdentityAttributes, MAX_TAGS, Resource, parse_arn};
pub use weir_model::DeliveryOptions;
/// Tag rules shared by the API.
pub mod tag_rules {
    pub use super::tags::check_tags;
}
pub use verification::VerificationMail;

/// Most recipients in one message (To + Cc + Bcc, or RCPT TO).
pub const MAX_RECIPIENTS: usize = 50;
/// Most identities of an account in a region (SES: 10,000).
pub const MAX_IDENTITIES: usize = 10_000;

/// A clock returning Unix nanoseconds; injected so tests can move time.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0))
}

/// Why a send was refused. Each front door renders these in its own wire format.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// A parameter is invalid (`InvalidParameterValue`).
    #[error("{0}")]
    InvalidParameter(String),
    /// Identity or sandbox rules (`MessageRejected`).
    #[error("{0}")]
    MessageRejected(String),
    /// Sending is paused for the account in this region.
    #[error("Sending is paused for this account.")]
    SendingPaused,
    /// Over the daily quota.
    #[error("Daily message quota exceeded.")]
    DailyQuotaExceeded {
        /// When a retry could pass, if ever.
        retry_after: Option<Duration>,
    },
    /// Over the send rate.
    #[error("Maximum sending rate exceeded.")]
    MaxSendRateExceeded {
        /// When a retry could pass.
        retry_after: Duration,
    },
    /// No template of that name.
    #[error("Template {0} does not exist.")]
    TemplateDoesNotExist(String),
    /// The template (named first) does not parse.
    #[error("Template {0} is not valid: {1}")]
    InvalidTemplate(String, String),
    /// TestRenderTemplate: a variable is missing from the data.
    #[error("Attribute '{0}' is not present in the rendering data.")]
    MissingRenderingAttribute(String),
    /// TestRenderTemplate: the data is not a JSON object.
    #[error("{0}")]
    InvalidRenderingParameter(String),
    /// No configuration set of that name.
    #[error("Configuration set <{0}> does not exist.")]
    ConfigurationSetDoesNotExist(String),
    /// The configuration set's sending is disabled.
    #[error("Sending is paused for configuration set <{0}>.")]
    ConfigurationSetSendingPaused(String),
    /// Cluster mode: the shared quota store did not answer in time (or is being re-seeded);
    /// nothing was accepted or charged.
    #[error("Temporary service failure: the shared quota store is unavailable. Try again later.")]
    Unavailable {
        /// When to try again.
        retry_after: Duration,
    },
    /// The account already has as much work in progress as it may (template rendering); nothing
    /// was accepted or charged.
    #[error("{0}")]
    Busy(String),
    /// The message could not be stored; nothing was accepted or charged.
    #[error("Temporary service failure")]
    Storage(#[source] StoreError),
}

/// Admin and API failures outside sending.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No such account, identity or address.
    #[error("{0}")]
    NotFound(String),
    /// Already exists.
    #[error("{0}")]
    Conflict(String),
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// Over one of SES's limits on resources.
    #[error("{0}")]
    LimitExceeded(String),
    /// Storage trouble.
    #[error("{0}")]
    Storage(#[from] StoreError),
    /// Cluster mode: the change could not be shared with the other nodes, so it was not made.
    #[error("{0}")]
    Unavailable(String),
}

impl AdminError {
    fn from_store(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => AdminError::NotFound(m),
            StoreError::Conflict(m) => AdminError::Conflict(m),
            StoreError::Limit(m) => AdminError::LimitExceeded(m),
            other => AdminError::Storage(other),
        }
    }
}

/// A message ready to be admitted: addresses validated, MIME built.
#[derive(Debug, Clone)]
pub struct Submission {
    /// Region the request is for.
    pub region: String,
    /// The MessageId already written into the MIME.
    pub message_id: String,
    /// Envelope sender (Source / MAIL FROM), as given.
    pub source: Mailbox,
    /// Every mailbox of the From, Sender and Return-Path headers (raw messages); each must be
    /// verified for the sending account, as SES requires.
    pub header_senders: Vec<Mailbox>,
    /// Recipients (validated), in order, possibly with duplicates.
    pub recipients: Vec<String>,
    /// The MIME message.
    pub mime: Vec<u8>,
    /// Configuration set, if any.
    pub configuration_set: Option<String>,
    /// Message tags.
    pub tags: Vec<(String, String)>,
    /// Front door (`api-v1`, `api-v2`, `smtp`).
    pub origin: &'static str,
    /// Recipients who unsubscribed from the message's contact list or topic: accepted, not sent.
    pub unsubscribed: Vec<String>,
}

/// Settings of the service not stored per account.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Settings of a region no operator has touched.
    pub default_region: RegionSettings,
    /// Domain for Message-ID headers.
    pub id_domain: String,
    /// Configuration sets whose mail is bulk (delivered after transactional mail). A message is
    /// also bulk when it carries the tag `weir-class=bulk`.
    pub bulk_configuration_sets: Vec<String>,
}

/// `GetSendQuota` figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuotaView {
    /// -1 for unlimited.
    pub max_24h: f64,
    /// -1 for unlimited.
    pub max_rate: f64,
    /// Recipients accepted in the last 24 hours.
    pub sent_last_24h: f64,
}

/// The service shared by every front door.
pub struct Service {
    /// The store, through its typed operations: the spool, the catalog, the quota and
    /// statistics ledger, named documents.
    spool: Spool,
    accounts: Accounts,
    ledger: Ledger,
    documents: Documents,
    catalog: RwLock<Catalog>,
    quotas: Mutex<HashMap<RegionKey, Arc<Mutex<QuotaState>>>>,
    config: ServiceConfig,
    clock: Clock,
    events: Option<Arc<weir_store::events::EventLog>>,
    /// Quota refusals since start, by (account, region) and reason.
    refusals: Mutex<HashMap<(RegionKey, &'static str), u64>>,
    /// DKIM of domain identities, by (account, region) and domain.
    dkim: RwLock<HashMap<(RegionKey, String), dkim::DkimEntry>>,
    /// Default return-path domain (if any) and the key of return-path tags, when mail comes
    /// back to weir.
    return_path: Option<(Option<String>, Vec<u8>)>,
    /// Host name of the feedback listener: MAIL FROM domains' MX must name it.
    feedback_mx_host: Option<String>,
    /// Custom MAIL FROM domains, by (account, region) and identity.
    mail_from: RwLock<HashMap<(RegionKey, String), weir_store::model::MailFromRecord>>,
    /// SNS topic ARNs the operator mapped to HTTP endpoints, with the accounts that may use each.
    event_topics: Vec<(String, Vec<String>)>,
    /// Base URL and key of unsubscribe links, once configured.
    unsubscribe: std::sync::OnceLock<(String, Vec<u8>)>,
    /// Identities' tags and default configuration sets, by (account, region) and identity.
    identity_attributes: RwLock<HashMap<(RegionKey, String), IdentityAttributes>>,
    /// Configuration sets, by (account, region) and name.
    configuration_sets: RwLock<HashMap<(RegionKey, String), ConfigurationSet>>,
    /// Verification mail for email-address identities, once configured.
    verification: std::sync::OnceLock<Arc<VerificationMail>>,
    /// Cluster mode: shared quotas and catalog.
    cluster: std::sync::OnceLock<Arc<cluster::Shared>>,
    /// Where templates are rendered.
    renders: crate::render_pool::RenderPool,
    /// Who may send feedback reports, and how many.
    feedback_sources: feedback::FeedbackSources,
    /// When each account may have its next verification message sent (Unix ms).
    verification_next: Mutex<HashMap<i64, i64>>,
    /// The regions requests may be for.
    regions: Vec<String>,
}

pub(crate) fn limits_of(s: &RegionSettings) -> Limits {
    Limits {
        max_24h: u64::try_from(s.max_24h).ok(),
        max_rate: (s.max_rate > 0.0).then_some(s.max_rate),
        burst_seconds: s.burst_seconds,
        sending_enabled: s.may_send(),
    }
}

fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len).map(|_| alphabet[rng.random_range(0..alphabet.len())] as char).collect()
}

/// Whether `addr` belongs to the SES mailbox simulator (always allowed in the sandbox).
pub fn is_simulator(addr: &str) -> bool {
    addr.to_ascii_lowercase().ends_with("@simulator.amazonses.com")
}

impl Service {
    /// Load the catalog and quota counters from `store`.
    pub fn open(store: Arc<Store>, config: ServiceConfig, clock: Clock) -> Result<Service, StoreError> {
        let now_s = clock() / 1_000_000_000;
        let (accounts, ledger, documents) =
            (Accounts::new(store.clone()), Ledger::new(store.clone()), Documents::new(store.clone()));
        let loaded = accounts.load()?;
        let mut catalog = Catalog::default();
        for a in loaded.accounts {
            catalog.insert_account(a);
        }
        for (id, region, s) in loaded.regions {
            catalog.regions.insert((id, region), s);
        }
        for (id, region, i) in loaded.identities {
            catalog.identities.entry((id, region)).or_default().insert(i.identity.clone(), i);
        }
        for (id, region, s) in loaded.suppressed {
            catalog.suppression.entry((id, region)).or_default().insert(s.address.clone(), s);
        }
        let mut dkim = HashMap::new();
        for (id, region, d) in loaded.dkim {
            dkim.insert(((id, region), d.identity.clone()), dkim::DkimEntry::new(d));
        }
        let mut mail_from = HashMap::new();
        for (id, region, m) in loaded.mail_from {
            mail_from.insert(((id, region), m.identity.clone()), m);
        }
        let configuration_sets = resources::load_configuration_sets(&documents)?;
        let identity_attributes = tags::load(&documents)?;
        let mut quotas = HashMap::new();
        for (key, rec) in ledger.load_quotas(now_s)? {
            quotas.insert(key, Arc::new(Mutex::new(QuotaState::restore(rec.seconds, rec.tat))));
        }
        ledger.prune_detached(now_s as i64);
        Ok(Service {
            spool: Spool::new(store.clone()),
            accounts,
            ledger,
            documents,
            catalog: RwLock::new(catalog),
            quotas: Mutex::new(quotas),
            config,
            clock,
            events: None,
            refusals: Mutex::new(HashMap::new()),
            dkim: RwLock::new(dkim),
            return_path: None,
            feedback_mx_host: None,
            mail_from: RwLock::new(mail_from),
            event_topics: Vec::new(),
            unsubscribe: std::sync::OnceLock::new(),
            configuration_sets: RwLock::new(configuration_sets),
            identity_attributes: RwLock::new(identity_attributes),
            verification: std::sync::OnceLock::new(),
            cluster: std::sync::OnceLock::new(),
            renders: Default::default(),
            feedback_sources: Default::default(),
            verification_next: Mutex::new(HashMap::new()),
            regions: crate::DEFAULT_REGIONS.iter().map(|r| r.to_string()).collect(),
        })
    }

    /// Answer for `regions` only (the default: [`crate::DEFAULT_REGIONS`]).
    pub fn with_regions(mut self, regions: Vec<String>) -> Self {
        self.regions = regions;
        self
    }

    /// Whether requests may be for `region`.
    pub fn region_known(&self, region: &str) -> bool {
        self.regions.iter().any(|r| r == region)
    }

    /// Record Send and Reject events in `events`.
    pub fn with_events(mut self, events: Arc<weir_store::events::EventLog>) -> Self {
        self.events = Some(events);
        self
    }

    /// The event log, if one is set.
    pub fn events(&self) -> Option<&Arc<weir_store::events::EventLog>> {
        self.events.as_ref()
    }

    fn mail_info(&self, account: &Account, sub: &Submission, now_ms: i64) -> weir_store::events::MailInfo {
        weir_store::events::MailInfo {
            message_id: sub.message_id.clone(),
            source: sub.source.addr.clone(),
            timestamp_ms: now_ms,
            account: account.name.clone(),
            region: sub.region.clone(),
            configuration_set: sub.configuration_set.clone(),
        }
    }

    /// Judge every (account, region)'s bounce and complaint rates over the last `window_s`
    /// seconds (SES's thresholds in `t`); a change of enforcement status is stored, logged and
    /// announced as an event. Returns how many changed.
    pub async fn enforce_reputation(&self, window_s: i64, t: &reputation::Thresholds) -> Result<usize, AdminError> {
        let now_s = self.now_ms() / 1000;
        let rows = self.ledger.reputation_volumes(now_s - window_s)?;
        // In a cluster, every node judges the sum of all nodes' volumes (the same verdict everywhere).
        let Some(rows) = self.cluster_volumes(rows, now_s - window_s).await else {
            return Ok(0);
        };
        // Per (account, region), only buckets that began after the operator last set the status.
        let mut volumes: std::collections::BTreeMap<(i64, String), (i64, i64, i64)> = Default::default();
        for (id, region, bucket, sent, bounces, complaints) in rows {
            let reset_s = self.region_settings(id, &region).enforcement_reset_ms / 1000;
            if bucket < reset_s {
                continue;
            }
            let v = volumes.entry((id, region)).or_default();
            (v.0, v.1, v.2) = (v.0 + sent, v.1 + bounces, v.2 + complaints);
        }
        let mut changed = 0;
        for ((id, region), (sent, bounces, complaints)) in volumes {
            let current = self.region_settings(id, &region).enforcement;
            let status = reputation::judge(current, sent, bounces, complaints, t);
            if status == current {
                continue;
            }
            self.update_region_settings(id, &region, |s| s.enforcement = status).await?;
            let account = self.account_by_id(id).map(|a| a.name.clone()).unwrap_or_default();
            tracing::warn!(
                %account, %region, from = %current, to = %status, recipients = sent, bounces, complaints,
                "reputation enforcement status changed"
            );
            if let Some(ev) = &self.events {
                ev.enforcement(&account, &region, current.as_str(), status.as_str(), (sent, bounces, complaints));
            }
            changed += 1;
        }
        Ok(changed)
    }

    /// Current time, Unix nanoseconds.
    pub fn now_ns(&self) -> u64 {
        (self.clock)()
    }

    /// Current time, Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        (self.now_ns() / 1_000_000) as i64
    }

    /// Domain used in Message-ID headers.
    pub fn id_domain(&self) -> &str {
        &self.config.id_domain
    }

    /// The account owning an access key.
    pub fn account_by_key(&self, access_key_id: &str) -> Option<Arc<Account>> {
        self.catalog.read().by_key.get(access_key_id).cloned()
    }

    /// An account by name.
    pub fn account_by_name(&self, name: &str) -> Result<Arc<Account>, AdminError> {
        self.catalog
            .read()
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| AdminError::NotFound(format!("no account named '{name}'")))
    }

    /// An account by row id.
    pub fn account_by_id(&self, id: i64) -> Option<Arc<Account>> {
        self.catalog.read().by_id.get(&id).cloned()
    }

    /// Regions an account has settings or identities in.
    pub fn regions_of(&self, account_id: i64) -> Vec<String> {
        let cat = self.catalog.read();
        let mut v: Vec<String> = cat
            .regions
            .keys()
            .chain(cat.identities.keys())
            .filter(|(id, _)| *id == account_id)
            .map(|(_, r)| r.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Every account, by id.
    pub fn accounts(&self) -> Vec<Arc<Account>> {
        let mut v: Vec<_> = self.catalog.read().by_name.values().cloned().collect();
        v.sort_by_key(|a| a.id);
        v
    }

    /// Settings of (account, region), defaults if never set.
    pub fn region_settings(&self, account_id: i64, region: &str) -> RegionSettings {
        self.catalog
            .read()
            .regions
            .get(&(account_id, region.to_string()))
            .cloned()
            .unwrap_or_else(|| self.config.default_region.clone())
    }

    fn quota_state(&self, key: &RegionKey) -> Arc<Mutex<QuotaState>> {
        self.quotas.lock().entry(key.clone()).or_default().clone()
    }

    /// GetSendQuota for (account, region).
    pub fn quota_view(&self, account_id: i64, region: &str) -> QuotaView {
        let s = self.region_settings(account_id, region);
        let sent = self.quota_state(&(account_id, region.to_string())).lock().sent_last_24h(self.now_ns());
        QuotaView {
            max_24h: if s.max_24h < 0 { -1.0 } else { s.max_24h as f64 },
            max_rate: if s.max_rate <= 0.0 { -1.0 } else { s.max_rate },
            sent_last_24h: sent as f64,
        }
    }

    /// GetSendQuota for (account, region), counting every node's sends in a cluster.
    pub async fn send_quota(&self, account_id: i64, region: &str) -> Result<QuotaView, SubmitError> {
        let s = self.region_settings(account_id, region);
        let sent = self.sent_last_24h(account_id, region).await?;
        Ok(QuotaView {
            max_24h: if s.max_24h < 0 { -1.0 } else { s.max_24h as f64 },
            max_rate: if s.max_rate <= 0.0 { -1.0 } else { s.max_rate },
            sent_last_24h: sent as f64,
        })
    }
}

/// The Bounce SES reports for a recipient on the account-level suppression list.
const SUPPRESSED_BOUNCE: weir_store::events::Failure<'static> = weir_store::events::Failure {
    kind: "Permanent",
    subtype: "OnAccountSuppressionList",
    status: "5.1.1",
    diagnostic: "Amazon SES did not send the message to this address because it is on the suppression list for your account.",
};

fn display(m: &Mailbox) -> String {
    match &m.name {
        Some(n) => format!("{n} <{}>", m.addr),
        None => m.addr.clone(),
    }
}

#[cfg(test)]
mod tests;
