//! Templates and configuration sets of an account in a region: stored as JSON documents,
//! configuration sets mirrored in memory because every send and every event consults them.

use serde::{Deserialize, Serialize};
use weir_model::DeliveryOptions;
use weir_store::model::{Doc, Put};

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use super::core::Core;
use super::directory::Directory;
use super::{AdminError, SubmitError};
use crate::catalog::RegionKey;
use crate::template::{Compiled, TemplateParts};

const TEMPLATE: &str = "template";
/// Most templates of an account in a region (SES: 10,000).
pub const MAX_TEMPLATES: usize = 10_000;
/// Most configuration sets of an account in a region (SES: 10,000).
pub const MAX_CONFIGURATION_SETS: usize = 10_000;
/// Most event destinations of one configuration set (SES: 10).
pub const MAX_EVENT_DESTINATIONS: usize = 10;
pub(super) const CONFIGURATION_SET: &str = "configuration-set";

/// A stored template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTemplate {
    /// Its name.
    pub name: String,
    /// Its parts.
    pub parts: TemplateParts,
    /// When it was created, Unix milliseconds.
    pub created_ms: i64,
}

/// Where a configuration set's events go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventDestination {
    /// Its name, unique within the set.
    pub name: String,
    /// Whether events are published to it.
    pub enabled: bool,
    /// Event types it takes, in SES v2's spelling (`SEND`, `DELIVERY`, `RENDERING_FAILURE`…).
    pub matching_event_types: Vec<String>,
    /// The destination as the API described it (`SnsDestination`, `CloudWatchDestination`…),
    /// in v2's shape.
    pub target: serde_json::Value,
}

/// A configuration set and its options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigurationSet {
    /// Its name.
    pub name: String,
    /// Sending options: whether mail using the set may be sent.
    pub sending_enabled: bool,
    /// Reputation options.
    pub reputation_metrics_enabled: bool,
    /// Reputation options: when metrics last started afresh, Unix milliseconds.
    pub last_fresh_start_ms: Option<i64>,
    /// Delivery options: `REQUIRE` or `OPTIONAL`.
    pub tls_policy: String,
    /// Delivery options: the sending pool (stored, not used: weir has one pool per node).
    pub sending_pool_name: Option<String>,
    /// Delivery options: how long delivery is attempted, seconds.
    pub max_delivery_seconds: Option<i64>,
    /// Suppression options: the reasons (`BOUNCE`, `COMPLAINT`) for which the account-level list
    /// applies; `None` means the account's setting.
    pub suppressed_reasons: Option<Vec<weir_store::model::SuppressionReason>>,
    /// Tracking options.
    pub custom_redirect_domain: Option<String>,
    /// Tracking options: `REQUIRE`, `OPTIONAL` or `REQUIRE_OPEN_ONLY`.
    pub https_policy: Option<String>,
    /// Tags.
    pub tags: Vec<(String, String)>,
    /// Event destinations.
    pub event_destinations: Vec<EventDestination>,
    /// When it was created, Unix milliseconds.
    pub created_ms: i64,
}

impl ConfigurationSet {
    /// A set with SES's defaults.
    pub fn new(name: &str, created_ms: i64) -> ConfigurationSet {
        ConfigurationSet {
            name: name.to_string(),
            sending_enabled: true,
            reputation_metrics_enabled: false,
            last_fresh_start_ms: None,
            tls_policy: "OPTIONAL".into(),
            sending_pool_name: None,
            max_delivery_seconds: None,
            suppressed_reasons: None,
            custom_redirect_domain: None,
            https_policy: None,
            tags: vec![],
            event_destinations: vec![],
            created_ms,
        }
    }
}

/// SES's rule for template and configuration set names: 1-64 ASCII letters, digits, '-', '_'.
pub(super) fn check_name(what: &str, name: &str) -> Result<(), AdminError> {
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(AdminError::Invalid(format!(
            "Invalid {what} name '{}': use 1-64 ASCII letters, digits, '-' or '_'.",
            name.escape_debug()
        )));
    }
    Ok(())
}

fn storage(e: weir_store::StoreError) -> SubmitError {
    SubmitError::Storage(e)
}

/// Templates, configuration sets and their event destinations; configuration sets mirrored in
/// memory (one lock).
pub struct Resources {
    core: Arc<Core>,
    directory: Arc<Directory>,
    sets: RwLock<HashMap<(RegionKey, String), ConfigurationSet>>,
    /// SNS topic ARNs the operator mapped to HTTP endpoints, with the accounts that may use each.
    event_topics: Vec<(String, Vec<String>)>,
}

impl Resources {
    pub(crate) fn new(
        core: Arc<Core>,
        directory: Arc<Directory>,
        event_topics: Vec<(String, Vec<String>)>,
    ) -> Result<Self, weir_store::StoreError> {
        let sets = RwLock::new(load_configuration_sets(&core.documents)?);
        Ok(Resources { core, directory, sets, event_topics })
    }

    /// The in-memory copy of a configuration set follows its document (another node's change).
    pub(crate) fn mirror(&self, account_id: i64, region: &str, name: &str, set: Option<ConfigurationSet>) {
        super::cluster::set_or_remove(
            &mut self.sets.write(),
            ((account_id, region.to_string()), name.to_string()),
            set,
        );
    }

    /// Store a new template (`update`: replace an existing one). The parts must compile.
    pub async fn put_template(
        &self,
        account_id: i64,
        region: &str,
        name: &str,
        parts: TemplateParts,
        update: bool,
    ) -> Result<(), AdminError> {
        check_name("template", name)?;
        Compiled::new(&parts).map_err(|e| AdminError::Invalid(format!("Template {name} is not valid: {e}")))?;
        let doc = serde_json::to_string(&parts).map_err(|e| AdminError::Invalid(e.to_string()))?;
        let (r, n, now) = (region.to_string(), name.to_string(), self.core.now_ms());
        let mode = if update { Put::Update } else { Put::CreateWithin(MAX_TEMPLATES) };
        let what = format!("Template {name}");
        self.core
            .documents
            .put((account_id, &r, TEMPLATE), &n, doc, now, mode, &what)
            .await
            .map_err(AdminError::from_store)?;
        self.core.share_doc(account_id, region, TEMPLATE, name).await;
        Ok(())
    }

    /// A stored template's parts.
    pub fn template(&self, account_id: i64, region: &str, name: &str) -> Result<TemplateParts, SubmitError> {
        self.stored_template(account_id, region, name)?
            .map(|t| t.parts)
            .ok_or_else(|| SubmitError::TemplateDoesNotExist(name.to_string()))
    }

    /// A stored template, if any.
    pub fn stored_template(
        &self,
        account_id: i64,
        region: &str,
        name: &str,
    ) -> Result<Option<StoredTemplate>, SubmitError> {
        let doc = self.core.documents.get((account_id, region, TEMPLATE), name).map_err(storage)?;
        Ok(doc.and_then(|d| template_of(&d)))
    }

    /// Every template's name and creation time (Unix ms), by name; the bodies are not read.
    pub fn template_names(&self, account_id: i64, region: &str) -> Result<Vec<(String, i64)>, AdminError> {
        Ok(self.core.documents.names((account_id, region, TEMPLATE))?)
    }

    /// Delete a template.
    pub async fn delete_template(&self, account_id: i64, region: &str, name: &str) -> Result<(), AdminError> {
        let (r, n, what) = (region.to_string(), name.to_string(), format!("Template {name}"));
        self.core.documents.delete((account_id, &r, TEMPLATE), &n, &what).await.map_err(AdminError::from_store)?;
        self.core.share_doc(account_id, region, TEMPLATE, name).await;
        Ok(())
    }

    /// Create a configuration set.
    pub async fn create_configuration_set(
        &self,
        account_id: i64,
        region: &str,
        set: ConfigurationSet,
    ) -> Result<(), AdminError> {
        check_name("configuration set", &set.name)?;
        self.write_configuration_set(account_id, region, set, Put::CreateWithin(MAX_CONFIGURATION_SETS)).await
    }

    /// Change a configuration set with `f`.
    pub async fn update_configuration_set(
        &self,
        account_id: i64,
        region: &str,
        name: &str,
        f: impl FnOnce(&mut ConfigurationSet) -> Result<(), AdminError>,
    ) -> Result<ConfigurationSet, AdminError> {
        let mut set = self.configuration_set(account_id, region, name).ok_or_else(|| no_set(name))?;
        f(&mut set)?;
        self.write_configuration_set(account_id, region, set.clone(), Put::Update).await?;
        Ok(set)
    }

    async fn write_configuration_set(
        &self,
        account_id: i64,
        region: &str,
        set: ConfigurationSet,
        mode: Put,
    ) -> Result<(), AdminError> {
        let doc = serde_json::to_string(&set).map_err(|e| AdminError::Invalid(e.to_string()))?;
        let (r, n, now) = (region.to_string(), set.name.clone(), self.core.now_ms());
        let what = format!("Configuration set <{}>", set.name);
        self.core
            .documents
            .put((account_id, &r, CONFIGURATION_SET), &n, doc, now, mode, &what)
            .await
            .map_err(AdminError::from_store)?;
        let name = set.name.clone();
        self.sets.write().insert(((account_id, region.to_string()), set.name.clone()), set);
        self.core.share_doc(account_id, region, CONFIGURATION_SET, &name).await;
        Ok(())
    }

    /// A configuration set, if it exists.
    pub fn configuration_set(&self, account_id: i64, region: &str, name: &str) -> Option<ConfigurationSet> {
        self.sets.read().get(&((account_id, region.to_string()), name.to_string())).cloned()
    }

    /// Every configuration set of an account in a region, by name.
    pub fn configuration_sets(&self, account_id: i64, region: &str) -> Vec<ConfigurationSet> {
        let mut v: Vec<ConfigurationSet> = self
            .sets
            .read()
            .iter()
            .filter(|((k, _), _)| k.0 == account_id && k.1 == region)
            .map(|(_, s)| s.clone())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Delete a configuration set.
    pub async fn delete_configuration_set(&self, account_id: i64, region: &str, name: &str) -> Result<(), AdminError> {
        let (r, n, what) = (region.to_string(), name.to_string(), format!("Configuration set <{name}>"));
        self.core
            .documents
            .delete((account_id, &r, CONFIGURATION_SET), &n, &what)
            .await
            .map_err(AdminError::from_store)?;
        self.sets.write().remove(&((account_id, region.to_string()), name.to_string()));
        self.core.share_doc(account_id, region, CONFIGURATION_SET, name).await;
        Ok(())
    }

    /// Whether `account` may publish to topic `arn`.
    fn topic_allowed(&self, arn: &str, account: &str) -> bool {
        self.event_topics.iter().any(|(t, accounts)| t == arn && accounts.iter().any(|a| a == "*" || a == account))
    }

    /// The topics of the enabled destinations of `set` that take `event_type` (SES v2's
    /// spelling, `DELIVERY`…).
    pub fn event_topics_for(&self, account: &str, region: &str, set: &str, event_type: &str) -> Vec<String> {
        let Ok(acct) = self.directory.account_by_name(account) else {
            return vec![];
        };
        let sets = self.sets.read();
        let Some(s) = sets.get(&((acct.id, region.to_string()), set.to_string())) else {
            return vec![];
        };
        s.event_destinations
            .iter()
            .filter(|d| d.enabled && d.matching_event_types.iter().any(|t| t == event_type))
            .filter_map(|d| d.target["SnsDestination"]["TopicArn"].as_str())
            // Checked again here: the operator may have bound the topic to other accounts since.
            .filter(|arn| self.topic_allowed(arn, account))
            .map(str::to_string)
            .collect()
    }

    /// An event destination must be an SNS topic the operator declared for this account.
    fn check_destination(&self, account_id: i64, dest: &EventDestination) -> Result<(), AdminError> {
        let Some(arn) = dest.target["SnsDestination"]["TopicArn"].as_str() else {
            let kind = dest.target.as_object().and_then(|o| o.keys().next().cloned()).unwrap_or_default();
            return Err(AdminError::Invalid(format!(
                "weir publishes events to SNS destinations only (each topic an HTTP endpoint declared in \
                 [[events.topics]]); {kind} is not supported."
            )));
        };
        let account = self.directory.account_by_id(account_id).map(|a| a.name.clone()).unwrap_or_default();
        if !self.topic_allowed(arn, &account) {
            // Whether the topic exists for another account is not said.
            return Err(AdminError::Invalid(format!(
                "SNS topic <{arn}> is not available to this account: the operator declares each topic, with \
                 its HTTP endpoint and the accounts that may use it, in weir.toml ([[events.topics]])."
            )));
        }
        Ok(())
    }

    /// Add an event destination to a set (`update`: replace the one of that name).
    pub async fn put_event_destination(
        &self,
        account_id: i64,
        region: &str,
        set: &str,
        dest: EventDestination,
        update: bool,
    ) -> Result<(), AdminError> {
        check_name("event destination", &dest.name)?;
        self.check_destination(account_id, &dest)?;
        self.update_configuration_set(account_id, region, set, |s| {
            let at = s.event_destinations.iter().position(|d| d.name == dest.name);
            match (at, update) {
                (Some(_), false) => Err(AdminError::Conflict(format!(
                    "Event destination {} already exists in configuration set <{}>.",
                    dest.name, s.name
                ))),
                (None, true) => Err(no_destination(&dest.name, &s.name)),
                (Some(i), true) => {
                    s.event_destinations[i] = dest;
                    Ok(())
                }
                (None, false) if s.event_destinations.len() >= MAX_EVENT_DESTINATIONS => {
                    Err(AdminError::LimitExceeded(format!(
                        "Configuration set <{}> has {MAX_EVENT_DESTINATIONS} event destinations, the most it may have.",
                        s.name
                    )))
                }
                (None, false) => {
                    s.event_destinations.push(dest);
                    Ok(())
                }
            }
        })
        .await
        .map(|_| ())
    }

    /// Remove an event destination from a set.
    pub async fn delete_event_destination(
        &self,
        account_id: i64,
        region: &str,
        set: &str,
        name: &str,
    ) -> Result<(), AdminError> {
        self.update_configuration_set(account_id, region, set, |s| {
            let before = s.event_destinations.len();
            s.event_destinations.retain(|d| d.name != name);
            if s.event_destinations.len() == before { Err(no_destination(name, &s.name)) } else { Ok(()) }
        })
        .await
        .map(|_| ())
    }

    /// What a message's configuration set asks of its delivery (the defaults without a set).
    pub fn delivery_options(&self, account_id: i64, region: &str, set: Option<&str>) -> DeliveryOptions {
        let Some(name) = set else { return DeliveryOptions::default() };
        let sets = self.sets.read();
        let Some(s) = sets.get(&((account_id, region.to_string()), name.to_string())) else {
            return DeliveryOptions::default();
        };
        DeliveryOptions {
            require_tls: s.tls_policy == "REQUIRE",
            max_delivery_ms: s.max_delivery_seconds.map(|v| v * 1000),
            suppressed_reasons: s.suppressed_reasons.clone(),
        }
    }

    /// The set a message names must exist and allow sending.
    pub(crate) fn require_configuration_set(
        &self,
        account_id: i64,
        region: &str,
        name: &str,
    ) -> Result<(), SubmitError> {
        let sets = self.sets.read();
        match sets.get(&((account_id, region.to_string()), name.to_string())) {
            None => Err(SubmitError::ConfigurationSetDoesNotExist(name.to_string())),
            Some(s) if !s.sending_enabled => Err(SubmitError::ConfigurationSetSendingPaused(name.to_string())),
            Some(_) => Ok(()),
        }
    }
}

/// Load every configuration set (at start).
pub(super) fn load_configuration_sets(
    documents: &weir_store::Documents,
) -> Result<std::collections::HashMap<(crate::catalog::RegionKey, String), ConfigurationSet>, weir_store::StoreError> {
    let mut out = std::collections::HashMap::new();
    for (id, region, d) in documents.list_all(CONFIGURATION_SET)? {
        match serde_json::from_str::<ConfigurationSet>(&d.doc) {
            Ok(s) => {
                out.insert(((id, region), d.name), s);
            }
            Err(e) => tracing::error!(name = %d.name, error = %e, "a stored configuration set does not parse; ignored"),
        }
    }
    Ok(out)
}

fn no_set(name: &str) -> AdminError {
    AdminError::NotFound(format!("Configuration set <{name}> does not exist."))
}

fn no_destination(name: &str, set: &str) -> AdminError {
    AdminError::NotFound(format!("Event destination {name} does not exist in configuration set <{set}>."))
}

fn template_of(d: &Doc) -> Option<StoredTemplate> {
    match serde_json::from_str::<TemplateParts>(&d.doc) {
        Ok(parts) => Some(StoredTemplate { name: d.name.clone(), parts, created_ms: d.created_ms }),
        Err(e) => {
            tracing::error!(name = %d.name, error = %e, "a stored template does not parse; ignored");
            None
        }
    }
}
