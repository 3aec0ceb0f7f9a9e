//! [`Service`]: admin, identity, suppression and send operations over the catalog, the quota
//! engine and the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rand::Rng;
use weir_mail::address::Mailbox;
use weir_quota::{Limits, QuotaState};
use weir_store::model::*;
use weir_store::{Accounts, Documents, Ledger, Spool, Store, StoreError};

use crate::catalog::{Catalog, RegionKey};
use crate::region_upper;
use crate::reputation;

mod accept;
mod cluster;
mod contacts;
mod core;
mod directory;
mod dkim;
mod feedback;
mod mail_from;
mod queue;
mod quota_gate;
mod resources;
mod send;
mod senders;
mod tags;
mod verification;
pub use cluster::{ClusterConfig, ClusterStatus, FOLLOW_INTERVAL, Shared, stored_node_name};
pub use contacts::Contacts;
pub use contacts::{Contact, ContactList, ListManagement, MAX_CONTACT_LISTS, Topic, status_for as contact_status};
pub use directory::Directory;
pub use dkim::DkimKeys;
pub use dkim::{DkimCheck, DkimView, DnsFinding, EASY_DKIM_TOKENS, status_after};
pub use feedback::Feedback;
pub use feedback::{COMPLAINTS_LOCAL_PART, FeedbackTarget};
pub use mail_from::MailFromDomains;
pub use mail_from::{MailFromCheck, MailFromView};
pub use quota_gate::QuotaGate;
pub use resources::Resources;
pub use resources::{ConfigurationSet, EventDestination, StoredTemplate};
pub use send::Sending;
pub use send::{
    BulkEntry, Content, MAX_BULK_DESTINATIONS, Outgoing, TemplateSource, V1_MAX_MESSAGE, V2_MAX_MESSAGE, check_tags,
};
pub use senders::DeliveryPort;
pub use tags::IdentitySettings;
pub use tags::{IdentityAttributes, MAX_TAGS, Resource, parse_arn};
pub use verification::Verification;
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

/// Settings of the service not stored per account, fixed at start.
#[derive(Clone)]
pub struct ServiceConfig {
    /// Settings of a region no operator has touched.
    pub default_region: RegionSettings,
    /// Domain for Message-ID headers.
    pub id_domain: String,
    /// Configuration sets whose mail is bulk (delivered after transactional mail). A message is
    /// also bulk when it carries the tag `weir-class=bulk`.
    pub bulk_configuration_sets: Vec<String>,
    /// The regions requests may be for.
    pub regions: Vec<String>,
    /// Where Send, Reject and the other SES events are recorded, if anywhere.
    pub events: Option<Arc<weir_store::events::EventLog>>,
    /// Cluster mode: quotas and catalog shared with the other nodes through Redis (run
    /// [`Service::run_cluster`] to keep in step); None for the embedded single node.
    pub cluster: Option<Arc<Shared>>,
    /// Send mail with per-recipient return paths (tags keyed with the secret): at the default
    /// domain if any, and at the MAIL FROM domains of identities that have one.
    pub return_path: Option<(Option<String>, Vec<u8>)>,
    /// Host name of the feedback listener, which MAIL FROM domains' MX records must name.
    pub feedback_mx_host: Option<String>,
    /// The feedback loops' networks (trusted to name a recipient without its return path).
    pub feedback_loops: Vec<ipnet::IpNet>,
    /// How many reports one address may send per minute.
    pub feedback_reports_per_minute: u32,
    /// SNS topic ARNs the operator mapped to HTTP endpoints, with the accounts that may use each.
    pub event_topics: Vec<(String, Vec<String>)>,
    /// Base URL and key of unsubscribe links.
    pub unsubscribe_links: Option<(String, Vec<u8>)>,
    /// Verification mail for email-address identities, if configured.
    pub verification_mail: Option<VerificationMail>,
}

impl ServiceConfig {
    /// A single node's settings with these defaults and nothing else configured.
    pub fn new(default_region: RegionSettings, id_domain: &str) -> ServiceConfig {
        ServiceConfig {
            default_region,
            id_domain: id_domain.to_string(),
            bulk_configuration_sets: Vec::new(),
            regions: crate::DEFAULT_REGIONS.iter().map(|r| r.to_string()).collect(),
            events: None,
            cluster: None,
            return_path: None,
            feedback_mx_host: None,
            feedback_loops: Vec::new(),
            feedback_reports_per_minute: 60,
            event_topics: Vec::new(),
            unsubscribe_links: None,
            verification_mail: None,
        }
    }
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

/// The service shared by every front door: small services, each with its own state and lock,
/// over one core (the store's handles, the clock, the event log, the replication discipline).
pub struct Service {
    core: Arc<core::Core>,
    directory: Arc<Directory>,
    quotas: Arc<QuotaGate>,
    resources: Arc<Resources>,
    identity_settings: Arc<IdentitySettings>,
    contacts: Arc<Contacts>,
    dkim: Arc<DkimKeys>,
    mail_from: Arc<MailFromDomains>,
    feedback: Feedback,
    verification: Verification,
    sending: Sending,
    port: Arc<DeliveryPort>,
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
    /// Load the catalog, the documents and the quota counters from `store`.
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
        let mut states = HashMap::new();
        for (key, rec) in ledger.load_quotas(now_s)? {
            states.insert(key, Arc::new(Mutex::new(QuotaState::restore(rec.seconds, rec.tat))));
        }
        ledger.prune_detached(now_s as i64);
        let c = config;
        let core = Arc::new(core::Core {
            spool: Spool::new(store.clone()),
            accounts,
            ledger,
            documents,
            clock,
            events: c.events,
            cluster: c.cluster,
        });
        let directory = Arc::new(Directory::new(core.clone(), catalog, c.default_region, c.regions));
        let quotas = Arc::new(QuotaGate::new(core.clone(), directory.clone(), states));
        let resources = Arc::new(Resources::new(core.clone(), directory.clone(), c.event_topics)?);
        let identity_settings = Arc::new(IdentitySettings::new(core.clone(), resources.clone())?);
        let contacts = Arc::new(Contacts::new(core.clone(), directory.clone(), c.unsubscribe_links));
        let dkim = Arc::new(DkimKeys::new(core.clone(), loaded.dkim));
        let mail_from =
            Arc::new(MailFromDomains::new(core.clone(), loaded.mail_from, c.return_path, c.feedback_mx_host));
        let feedback = Feedback::new(
            core.clone(),
            directory.clone(),
            mail_from.clone(),
            c.feedback_loops,
            c.feedback_reports_per_minute,
        );
        let verification = Verification::new(
            core.clone(),
            directory.clone(),
            quotas.clone(),
            c.verification_mail,
            c.id_domain.clone(),
        );
        let sending = Sending {
            core: core.clone(),
            directory: directory.clone(),
            quotas: quotas.clone(),
            resources: resources.clone(),
            identity_settings: identity_settings.clone(),
            contacts: contacts.clone(),
            mail_from: mail_from.clone(),
            renders: Default::default(),
            id_domain: c.id_domain,
            bulk_configuration_sets: c.bulk_configuration_sets,
        };
        let port = Arc::new(DeliveryPort {
            core: core.clone(),
            directory: directory.clone(),
            quotas: quotas.clone(),
            resources: resources.clone(),
            dkim: dkim.clone(),
            mail_from: mail_from.clone(),
        });
        Ok(Service {
            core,
            directory,
            quotas,
            resources,
            identity_settings,
            contacts,
            dkim,
            mail_from,
            feedback,
            verification,
            sending,
            port,
        })
    }

    /// Accounts, region settings, identities, the suppression list.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// SES's quotas, the refusals and the sending statistics.
    pub fn quotas(&self) -> &QuotaGate {
        &self.quotas
    }

    /// Templates, configuration sets and event destinations.
    pub fn resources(&self) -> &Resources {
        &self.resources
    }

    /// Identities' tags and default configuration sets.
    pub fn identity_settings(&self) -> &IdentitySettings {
        &self.identity_settings
    }

    /// Contact lists, contacts and unsubscribe links.
    pub fn contacts(&self) -> &Contacts {
        &self.contacts
    }

    /// Domains' DKIM keys.
    pub fn dkim(&self) -> &DkimKeys {
        &self.dkim
    }

    /// Identities' custom MAIL FROM domains and the return paths.
    pub fn mail_from(&self) -> &MailFromDomains {
        &self.mail_from
    }

    /// Mail that comes back: bounces and complaints.
    pub fn feedback(&self) -> &Feedback {
        &self.feedback
    }

    /// Verification mail of email-address identities.
    pub fn verification(&self) -> &Verification {
        &self.verification
    }

    /// Building, checking, admitting and spooling messages.
    pub fn sending(&self) -> &Sending {
        &self.sending
    }

    /// What the delivery engine needs of the accounts it sends for.
    pub fn delivery_port(&self) -> Arc<DeliveryPort> {
        self.port.clone()
    }

    /// The event log, if one is set.
    pub fn events(&self) -> Option<&Arc<weir_store::events::EventLog>> {
        self.core.events.as_ref()
    }

    /// Judge every (account, region)'s bounce and complaint rates over the last `window_s`
    /// seconds (SES's thresholds in `t`); a change of enforcement status is stored, logged and
    /// announced as an event. Returns how many changed.
    pub async fn enforce_reputation(&self, window_s: i64, t: &reputation::Thresholds) -> Result<usize, AdminError> {
        let now_s = self.now_ms() / 1000;
        let rows = self.core.ledger.reputation_volumes(now_s - window_s)?;
        // In a cluster, every node judges the sum of all nodes' volumes (the same verdict everywhere).
        let Some(rows) = self.quotas.cluster_volumes(rows, now_s - window_s).await else {
            return Ok(0);
        };
        // Per (account, region), only buckets that began after the operator last set the status.
        let mut volumes: std::collections::BTreeMap<(i64, String), (i64, i64, i64)> = Default::default();
        for (id, region, bucket, sent, bounces, complaints) in rows {
            let reset_s = self.directory.region_settings(id, &region).enforcement_reset_ms / 1000;
            if bucket < reset_s {
                continue;
            }
            let v = volumes.entry((id, region)).or_default();
            (v.0, v.1, v.2) = (v.0 + sent, v.1 + bounces, v.2 + complaints);
        }
        let mut changed = 0;
        for ((id, region), (sent, bounces, complaints)) in volumes {
            let current = self.directory.region_settings(id, &region).enforcement;
            let status = reputation::judge(current, sent, bounces, complaints, t);
            if status == current {
                continue;
            }
            self.directory.update_region_settings(id, &region, |s| s.enforcement = status).await?;
            let account = self.directory.account_by_id(id).map(|a| a.name.clone()).unwrap_or_default();
            tracing::warn!(
                %account, %region, from = %current, to = %status, recipients = sent, bounces, complaints,
                "reputation enforcement status changed"
            );
            if let Some(ev) = &self.core.events {
                ev.enforcement(&account, &region, current.as_str(), status.as_str(), (sent, bounces, complaints));
            }
            changed += 1;
        }
        Ok(changed)
    }

    /// Current time, Unix nanoseconds.
    pub fn now_ns(&self) -> u64 {
        self.core.now_ns()
    }

    /// Current time, Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.core.now_ms()
    }

    /// Delete an identity, with its DKIM keys and its attributes; `NotFound` if absent.
    pub async fn delete_identity(&self, account_id: i64, region: &str, identity: &str) -> Result<(), AdminError> {
        let name = weir_mail::address::normalize(identity);
        let existed = self.directory.delete_identity(account_id, region, &name).await?;
        self.dkim.delete_dkim(account_id, region, &name).await?;
        self.identity_settings.delete_identity_attributes(account_id, region, &name).await?;
        if existed { Ok(()) } else { Err(AdminError::NotFound(format!("Identity {identity} does not exist."))) }
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
