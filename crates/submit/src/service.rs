//! [`Service`]: admin, identity, suppression and send operations over the catalog, the quota
//! engine and the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use parking_lot::{Mutex, RwLock};
use rand::Rng;
use weir_mail::address::{Mailbox, normalize};
use weir_quota::{Limits, QuotaState, Refusal};
use weir_store::model::*;
use weir_store::spool::{QueueAction, QueueFilter, QueueRow, SummaryRow};
use weir_store::{Accounts, Documents, Ledger, Spool, Store, StoreError, ledger};

use crate::catalog::{Catalog, RegionKey};
use crate::region_upper;
use crate::reputation;

mod cluster;
mod contacts;
mod dkim;
mod feedback;
mod mail_from;
mod resources;
mod send;
mod senders;
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

    /// Recipients in the spool matching `f` (the operator's queue listing), at most `limit`.
    pub fn queue_rows(&self, f: &QueueFilter, limit: usize) -> Result<Vec<QueueRow>, AdminError> {
        Ok(self.spool.rows(f, self.now_ms(), limit)?)
    }

    /// What is waiting in the spool, by state and lane.
    pub fn queue_summary(&self) -> Result<Vec<SummaryRow>, AdminError> {
        Ok(self.spool.summary()?)
    }

    /// Retry now, hold or release the recipients `f` selects; returns how many changed.
    pub async fn queue_action(&self, action: QueueAction, f: QueueFilter) -> Result<usize, AdminError> {
        Ok(self.spool.apply(action, f, self.now_ms()).await?)
    }

    /// Take the queued or held recipients `f` selects out of the queue as bounced (the operator
    /// deleted them), each with a Bounce event; returns how many.
    pub async fn queue_delete(&self, f: QueueFilter) -> Result<usize, AdminError> {
        const REPLY: &str = "554 5.0.0 Deleted from the queue by the operator";
        let now = self.now_ms();
        let rows = self.spool.bounce(f, now, REPLY).await?;
        for r in &rows {
            tracing::info!(message_id = %r.message_id, recipient = %r.address, "deleted from the queue by the operator");
            if let Some(ev) = &self.events {
                let mail = weir_store::events::MailInfo {
                    message_id: r.message_id.clone(),
                    source: r.mail_from.clone(),
                    timestamp_ms: r.created_ms,
                    account: r.account.clone(),
                    region: r.region.clone(),
                    configuration_set: r.configuration_set.clone(),
                };
                let f = weir_store::events::Failure {
                    kind: "Permanent",
                    subtype: "General",
                    status: "5.0.0",
                    diagnostic: "smtp; 554 5.0.0 Deleted from the queue by the operator",
                };
                ev.bounce(&mail, now, &r.address, &f);
            }
        }
        Ok(rows.len())
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

    // ---------------------------------------------------------------- admin

    /// Create an account with fresh credentials.
    pub async fn create_account(&self, name: &str) -> Result<Arc<Account>, AdminError> {
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(AdminError::Invalid(format!(
                "invalid account name '{name}': use 1-64 letters, digits, '-', '_' or '.'"
            )));
        }
        let akid = format!("AKIA{}", random_string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16));
        let secret = random_string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 40);
        let (n, now) = (name.to_string(), self.now_ms());
        if self.account_by_name(name).is_ok() {
            return Err(AdminError::Conflict(format!("account '{name}' already exists")));
        }
        let a = match self.new_account_id(name).await? {
            Some(id) => {
                let a = Account { id, name: n, access_key_id: akid, secret, created_ms: now };
                self.commit(cluster::Change::Account { account: a.clone() }).await?;
                a
            }
            None => {
                let a = self.accounts.create(n, akid, secret, now).await.map_err(AdminError::from_store)?;
                self.catalog.write().insert_account(a.clone());
                a
            }
        };
        tracing::info!(account = %a.name, access_key_id = %a.access_key_id, "account created");
        self.account_by_name(name)
    }

    /// Replace the settings of (account, region).
    pub async fn set_region_settings(
        &self,
        account_id: i64,
        region: &str,
        s: RegionSettings,
    ) -> Result<(), AdminError> {
        self.commit(cluster::Change::Region { account_id, region: region.to_string(), settings: s }).await
    }

    /// Change settings of (account, region) with `f`.
    pub async fn update_region_settings(
        &self,
        account_id: i64,
        region: &str,
        f: impl FnOnce(&mut RegionSettings),
    ) -> Result<RegionSettings, AdminError> {
        let mut s = self.region_settings(account_id, region);
        f(&mut s);
        self.set_region_settings(account_id, region, s.clone()).await?;
        Ok(s)
    }

    // ---------------------------------------------------------------- identities

    /// Create (or re-create) an identity. `verified` is the operator's word; API calls pass false.
    /// An existing verified identity stays verified.
    pub async fn put_identity(
        &self,
        account_id: i64,
        region: &str,
        identity: &str,
        kind: IdentityKind,
        verified: bool,
    ) -> Result<Identity, AdminError> {
        let name = normalize(identity);
        let key = (account_id, region.to_string());
        let existing = self.catalog.read().identities.get(&key).and_then(|m| m.get(&name).cloned());
        let status = match (&existing, verified) {
            (_, true) => VerificationStatus::Success,
            (Some(e), false) => e.status,
            (None, false) => VerificationStatus::Pending,
        };
        let token = existing
            .as_ref()
            .map(|e| e.token.clone())
            .unwrap_or_else(|| base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>()));
        if existing.is_none() {
            let n = self.catalog.read().identities.get(&key).map_or(0, |m| m.len());
            if n >= MAX_IDENTITIES {
                return Err(AdminError::LimitExceeded(format!(
                    "Identity {name} cannot be created: an account may have at most {MAX_IDENTITIES} identities in a region."
                )));
            }
        }
        let id = Identity {
            identity: name.clone(),
            kind,
            status,
            token,
            created_ms: existing.as_ref().map_or(self.now_ms(), |e| e.created_ms),
        };
        self.commit(cluster::Change::Identity { account_id, region: region.to_string(), identity: id.clone() }).await?;
        Ok(id)
    }

    /// Delete an identity; `NotFound` if absent.
    pub async fn delete_identity(&self, account_id: i64, region: &str, identity: &str) -> Result<(), AdminError> {
        let name = normalize(identity);
        let existed = self.identity(account_id, region, &name).is_some();
        if existed {
            let region = region.to_string();
            self.commit(cluster::Change::IdentityDeleted { account_id, region, identity: name.clone() }).await?;
        }
        self.delete_dkim(account_id, region, &name).await?;
        self.delete_identity_attributes(account_id, region, &name).await?;
        if existed { Ok(()) } else { Err(AdminError::NotFound(format!("Identity {identity} does not exist."))) }
    }

    /// Domain identities waiting for their `_amazonses` record: (account id, region, domain,
    /// token, created at).
    pub fn verification_checks(&self) -> Vec<(i64, String, String, String, i64)> {
        let cat = self.catalog.read();
        cat.identities
            .iter()
            .flat_map(|((account_id, region), ids)| {
                ids.values()
                    .filter(|i| i.kind == IdentityKind::Domain && i.status != VerificationStatus::Success)
                    .map(move |i| (*account_id, region.clone(), i.identity.clone(), i.token.clone(), i.created_ms))
            })
            .collect()
    }

    /// Set a domain identity's verification status (the DNS check's verdict); true if it changed.
    pub async fn set_verification(
        &self,
        account_id: i64,
        region: &str,
        domain: &str,
        status: VerificationStatus,
    ) -> Result<bool, AdminError> {
        let key = (account_id, region.to_string());
        let Some(mut id) = self.catalog.read().identities.get(&key).and_then(|m| m.get(domain).cloned()) else {
            return Ok(false);
        };
        if id.status == status {
            return Ok(false);
        }
        id.status = status;
        self.commit(cluster::Change::Identity { account_id, region: region.to_string(), identity: id }).await?;
        Ok(true)
    }

    /// Every identity of (account, region), oldest first.
    pub fn identities(&self, account_id: i64, region: &str) -> Vec<Identity> {
        let mut v: Vec<Identity> = self
            .catalog
            .read()
            .identities
            .get(&(account_id, region.to_string()))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then_with(|| a.identity.cmp(&b.identity)));
        v
    }

    /// One identity.
    pub fn identity(&self, account_id: i64, region: &str, identity: &str) -> Option<Identity> {
        self.catalog
            .read()
            .identities
            .get(&(account_id, region.to_string()))
            .and_then(|m| m.get(&normalize(identity)).cloned())
    }

    // ---------------------------------------------------------------- suppression

    /// Add an address to the suppression list.
    pub async fn put_suppressed(
        &self,
        account_id: i64,
        region: &str,
        address: &str,
        reason: &str,
        message_id: Option<String>,
    ) -> Result<Suppressed, AdminError> {
        let s = Suppressed {
            address: normalize(address),
            reason: reason.to_string(),
            updated_ms: self.now_ms(),
            message_id,
        };
        self.commit(cluster::Change::Suppressed { account_id, region: region.to_string(), entry: s.clone() }).await?;
        Ok(s)
    }

    /// One suppressed address.
    pub fn suppressed(&self, account_id: i64, region: &str, address: &str) -> Option<Suppressed> {
        self.catalog
            .read()
            .suppression
            .get(&(account_id, region.to_string()))
            .and_then(|m| m.get(&normalize(address)).cloned())
    }

    /// The whole suppression list of (account, region), by address.
    pub fn suppression_list(&self, account_id: i64, region: &str) -> Vec<Suppressed> {
        self.catalog
            .read()
            .suppression
            .get(&(account_id, region.to_string()))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Remove an address from the suppression list; `NotFound` if absent.
    pub async fn delete_suppressed(&self, account_id: i64, region: &str, address: &str) -> Result<(), AdminError> {
        let a = normalize(address);
        let existed = self.suppressed(account_id, region, &a).is_some();
        if existed {
            self.commit(cluster::Change::Unsuppressed { account_id, region: region.to_string(), address: a }).await?;
        }
        if existed {
            Ok(())
        } else {
            Err(AdminError::NotFound(format!("Email address {address} does not exist on your suppression list.")))
        }
    }

    // ---------------------------------------------------------------- statistics

    /// GetSendStatistics data points: in a cluster, every node's (this node's alone, logged, while
    /// Redis is away).
    pub async fn send_statistics(&self, account_id: i64, region: &str) -> Result<Vec<SendDataPoint>, StoreError> {
        let now_s = (self.now_ns() / 1_000_000_000) as i64;
        if let Some(points) = self.cluster_statistics(account_id, region, now_s - ledger::STATS_RETENTION_SECS).await? {
            return Ok(points);
        }
        self.ledger.send_statistics(account_id, region, now_s)
    }

    // ---------------------------------------------------------------- sending

    /// The account whose SES SMTP credentials for `region` these are (constant-time compare).
    pub fn smtp_login(&self, username: &str, password: &str, region: &str) -> Option<Arc<Account>> {
        let account = self.account_by_key(username)?;
        let expected = weir_sigv4::smtp_password(&account.secret, region);
        weir_sigv4::constant_time_eq(expected.as_bytes(), password.as_bytes()).then_some(account)
    }

    /// Count a quota refusal and turn it into the error the front doors answer with.
    fn refused(&self, key: &RegionKey, r: Refusal) -> SubmitError {
        let (reason, err) = match r {
            Refusal::SendingPaused => ("sending_paused", SubmitError::SendingPaused),
            Refusal::DailyQuotaExceeded { retry_after } => {
                ("daily_quota", SubmitError::DailyQuotaExceeded { retry_after })
            }
            Refusal::MaxSendRateExceeded { retry_after } => {
                ("max_send_rate", SubmitError::MaxSendRateExceeded { retry_after })
            }
        };
        *self.refusals.lock().entry((key.clone(), reason)).or_default() += 1;
        err
    }

    /// Quota refusals since start: (account id, region, reason, count).
    pub fn quota_refusals(&self) -> Vec<(i64, String, &'static str, u64)> {
        self.refusals.lock().iter().map(|((k, reason), n)| (k.0, k.1.clone(), *reason, *n)).collect()
    }

    /// Could a one-recipient message from `source` be accepted now? Charges nothing; SMTP asks
    /// at MAIL FROM so that a client does not upload a body only to be refused.
    pub async fn precheck(&self, account: &Account, region: &str, source: &Mailbox) -> Result<(), SubmitError> {
        let key: RegionKey = (account.id, region.to_string());
        let settings = self.region_settings(account.id, region);
        if !settings.sending_enabled {
            return Err(self.refused(&key, Refusal::SendingPaused));
        }
        if !self.catalog.read().is_verified(&key, &source.addr) {
            return Err(SubmitError::MessageRejected(format!(
                "Email address is not verified. The following identities failed the check in region {}: {}",
                region_upper(region),
                display(source)
            )));
        }
        self.would_pass(&key, &limits_of(&settings), 1).await
    }

    /// Admit and spool one message. Returns the MessageId once the message, its recipients and
    /// its quota charge are durable.
    pub async fn submit(&self, account: &Account, mut sub: Submission) -> Result<String, SubmitError> {
        if sub.recipients.is_empty() {
            return Err(SubmitError::InvalidParameter("Missing required header 'To'.".into()));
        }
        if sub.recipients.len() > MAX_RECIPIENTS {
            return Err(SubmitError::InvalidParameter("Recipient count exceeds 50.".into()));
        }
        if sub.configuration_set.is_none() {
            sub.configuration_set = self.default_configuration_set(account.id, &sub.region, &sub.source.addr);
        }
        if let Some(name) = &sub.configuration_set {
            self.require_configuration_set(account.id, &sub.region, name)?;
        }
        let key: RegionKey = (account.id, sub.region.clone());
        let settings = self.region_settings(account.id, &sub.region);
        if !settings.sending_enabled {
            return Err(SubmitError::SendingPaused);
        }
        // Distinct recipients are the unit of the quota.
        let mut distinct: Vec<String> = Vec::with_capacity(sub.recipients.len());
        for r in &sub.recipients {
            if !distinct.iter().any(|d| d.eq_ignore_ascii_case(r)) {
                distinct.push(r.clone());
            }
        }
        // The catalog is read in one go (its guard must not live across an await).
        let checked: Result<Vec<(String, RecipientState)>, Vec<String>> = {
            let cat = self.catalog.read();
            let mut failed: Vec<String> = Vec::new();
            if !cat.is_verified(&key, &sub.source.addr) {
                failed.push(display(&sub.source));
            }
            for f in &sub.header_senders {
                if !f.addr.eq_ignore_ascii_case(&sub.source.addr) && !cat.is_verified(&key, &f.addr) {
                    failed.push(display(f));
                }
            }
            if !settings.production {
                for r in &distinct {
                    if !is_simulator(r) && !cat.is_verified(&key, r) {
                        failed.push(r.clone());
                    }
                }
            }
            if failed.is_empty() {
                Ok(distinct
                    .iter()
                    .map(|r| {
                        let st = if cat.is_suppressed(&key, r)
                            || sub.unsubscribed.iter().any(|u| u.eq_ignore_ascii_case(r))
                        {
                            RecipientState::Suppressed
                        } else {
                            RecipientState::Queued
                        };
                        (r.clone(), st)
                    })
                    .collect())
            } else {
                Err(failed)
            }
        };
        let states = match checked {
            Ok(states) => states,
            Err(failed) => {
                let (id, region, now) = (account.id, sub.region.clone(), self.now_ms());
                // Recorded before the answer, so GetSendStatistics right after it counts it.
                if let Err(e) = self.ledger.record_reject(id, region, now).await {
                    tracing::error!(error = %e, "a rejection was not counted in the sending statistics");
                }
                let msg = format!(
                    "Email address is not verified. The following identities failed the check in region {}: {}",
                    region_upper(&sub.region),
                    failed.join(", ")
                );
                if let Some(ev) = &self.events {
                    ev.reject(&self.mail_info(account, &sub, now), &msg);
                }
                return Err(SubmitError::MessageRejected(msg));
            }
        };
        self.check_mail_from(account.id, &sub.region, &sub.source.addr)?;

        let charge = self.decide(&key, &limits_of(&settings), distinct.len() as u32, &sub.message_id).await?;
        let now = self.now_ns();
        let tags_json = serde_json::Value::Array(
            sub.tags.iter().map(|(n, v)| serde_json::json!({"Name": n, "Value": v})).collect(),
        )
        .to_string();
        let bulk = sub.tags.iter().any(|(k, v)| k == "weir-class" && v == "bulk")
            || sub.configuration_set.as_ref().is_some_and(|c| self.config.bulk_configuration_sets.contains(c));
        let priority = if bulk { Priority::Bulk } else { Priority::Transactional };
        let info =
            self.events.as_ref().map(|_| (self.mail_info(account, &sub, (now / 1_000_000) as i64), sub.tags.clone()));
        let sub_size = sub.mime.len();
        let suppressed: Vec<String> =
            states.iter().filter(|(_, st)| *st == RecipientState::Suppressed).map(|(r, _)| r.clone()).collect();
        let unsubscribed_list = std::mem::take(&mut sub.unsubscribed);
        let unsubscribed = |r: &str| unsubscribed_list.iter().any(|u| u.eq_ignore_ascii_case(r));
        let entry = SpoolEntry {
            id: sub.message_id.clone(),
            account_id: account.id,
            region: sub.region.clone(),
            created_ms: (now / 1_000_000) as i64,
            mail_from: sub.source.addr.clone(),
            configuration_set: sub.configuration_set,
            tags_json,
            source: sub.origin.to_string(),
            body: sub.mime,
            recipients: states,
            quota_second: charge.second,
            quota_count: charge.count,
            quota_tat: charge.tat_after,
            priority,
        };
        match self.spool.enqueue(vec![entry]).await {
            Ok(()) => {
                if let (Some(ev), Some((mail, tags))) = (&self.events, info) {
                    ev.send(&mail, &distinct, &tags);
                    // As SES: accepted, not sent to addresses on the account's suppression
                    // list, and a Bounce event says so.
                    for rcpt in suppressed.iter().filter(|r| !unsubscribed(r)) {
                        ev.bounce(&mail, mail.timestamp_ms, rcpt, &SUPPRESSED_BOUNCE);
                    }
                }
                tracing::info!(
                    message_id = %sub.message_id, account = %account.name, region = %sub.region,
                    origin = %sub.origin, recipients = distinct.len(), size = sub_size, "accepted"
                );
                for rcpt in &suppressed {
                    if unsubscribed(rcpt) {
                        tracing::info!(message_id = %sub.message_id, recipient = %rcpt, "not sent: the contact unsubscribed");
                    } else {
                        tracing::info!(message_id = %sub.message_id, recipient = %rcpt, "not sent: the address is on the account's suppression list");
                    }
                }
                Ok(sub.message_id)
            }
            Err(e) => {
                self.give_back(&key, &charge).await;
                tracing::error!(error = %e, "spool write failed; refunded the quota charge");
                Err(SubmitError::Storage(e))
            }
        }
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
