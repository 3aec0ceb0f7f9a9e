//! Tags of identities, configuration sets and contact lists (TagResource and friends, by ARN),
//! and identities' default configuration sets.

use serde::{Deserialize, Serialize};
use weir_store::model::Put;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use super::core::Core;
use super::resources::Resources;
use super::{AdminError, Service};
use crate::catalog::RegionKey;

pub(super) const IDENTITY_ATTRIBUTES: &str = "identity-attributes";
/// SES's most tags on one resource.
pub const MAX_TAGS: usize = 50;

/// What an identity carries besides its verification: tags and a default configuration set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityAttributes {
    /// Tags.
    pub tags: Vec<(String, String)>,
    /// The set of messages from this identity that name none.
    pub configuration_set: Option<String>,
}

/// A taggable resource named by an ARN: `arn:aws:ses:REGION:ACCOUNT:TYPE/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// `identity/NAME`.
    Identity(String),
    /// `configuration-set/NAME`.
    ConfigurationSet(String),
    /// `contact-list/NAME`.
    ContactList(String),
}

/// Parse a resource ARN in `region`.
pub fn parse_arn(arn: &str, region: &str) -> Result<Resource, AdminError> {
    let bad = || AdminError::Invalid(format!("Invalid ARN {arn}: use arn:aws:ses:{region}:ACCOUNT:TYPE/NAME."));
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, _, service, r, _, resource] = parts.as_slice() else { return Err(bad()) };
    if *prefix != "arn" || *service != "ses" {
        return Err(bad());
    }
    if *r != region {
        return Err(AdminError::NotFound(format!("Resource not found: {arn} (this request is for {region}).")));
    }
    let (kind, name) = resource.split_once('/').ok_or_else(bad)?;
    match kind {
        "identity" => Ok(Resource::Identity(name.to_string())),
        "configuration-set" => Ok(Resource::ConfigurationSet(name.to_string())),
        "contact-list" => Ok(Resource::ContactList(name.to_string())),
        other => Err(AdminError::Invalid(format!(
            "weir tags identities, configuration sets and contact lists; {other} resources are not supported."
        ))),
    }
}

/// Check SES's tag rules: keys 1-128 characters, values up to 256, at most 50, keys unique.
pub fn check_tags(tags: &[(String, String)]) -> Result<(), AdminError> {
    if tags.len() > MAX_TAGS {
        return Err(AdminError::Invalid(format!("A resource can have at most {MAX_TAGS} tags.")));
    }
    for (i, (k, v)) in tags.iter().enumerate() {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(AdminError::Invalid(format!("Tag key '{k}' must be 1 to 128 characters long.")));
        }
        if v.chars().count() > 256 {
            return Err(AdminError::Invalid(format!("The value of tag '{k}' must be at most 256 characters long.")));
        }
        if k.starts_with("aws:") {
            return Err(AdminError::Invalid(format!("Tag key '{k}': the prefix aws: is reserved.")));
        }
        if tags[..i].iter().any(|(o, _)| o == k) {
            return Err(AdminError::Invalid(format!("Tag key '{k}' appears twice.")));
        }
    }
    Ok(())
}

/// Merge `add` into `tags` (a key given again takes the new value).
fn merge(tags: &mut Vec<(String, String)>, add: Vec<(String, String)>) {
    for (k, v) in add {
        match tags.iter_mut().find(|(o, _)| *o == k) {
            Some(t) => t.1 = v,
            None => tags.push((k, v)),
        }
    }
}

/// Identities' tags and default configuration sets, by (account, region) and identity (one lock).
pub struct IdentitySettings {
    core: Arc<Core>,
    resources: Arc<Resources>,
    attrs: RwLock<HashMap<(RegionKey, String), IdentityAttributes>>,
}

impl IdentitySettings {
    pub(crate) fn new(core: Arc<Core>, resources: Arc<Resources>) -> Result<Self, weir_store::StoreError> {
        let attrs = RwLock::new(load(&core.documents)?);
        Ok(IdentitySettings { core, resources, attrs })
    }

    /// The in-memory copy follows its document (another node's change).
    pub(crate) fn mirror(&self, account_id: i64, region: &str, identity: &str, attrs: Option<IdentityAttributes>) {
        let key = ((account_id, region.to_string()), identity.to_string());
        super::cluster::set_or_remove(&mut self.attrs.write(), key, attrs);
    }

    /// An identity's tags and default configuration set.
    pub fn identity_attributes(&self, account_id: i64, region: &str, identity: &str) -> IdentityAttributes {
        self.attrs
            .read()
            .get(&((account_id, region.to_string()), identity.to_ascii_lowercase()))
            .cloned()
            .unwrap_or_default()
    }

    /// Replace an identity's tags and default configuration set (which must exist).
    pub async fn set_identity_attributes(
        &self,
        account_id: i64,
        region: &str,
        identity: &str,
        attrs: IdentityAttributes,
    ) -> Result<(), AdminError> {
        check_tags(&attrs.tags)?;
        if let Some(set) = &attrs.configuration_set
            && self.resources.configuration_set(account_id, region, set).is_none()
        {
            return Err(AdminError::NotFound(format!("Configuration set <{set}> does not exist.")));
        }
        let name = identity.to_ascii_lowercase();
        let doc = serde_json::to_string(&attrs).map_err(|e| AdminError::Invalid(e.to_string()))?;
        let (r, n, now) = (region.to_string(), name.clone(), self.core.now_ms());
        self.core
            .documents
            .put((account_id, &r, IDENTITY_ATTRIBUTES), &n, doc, now, Put::Upsert, "")
            .await
            .map_err(AdminError::from_store)?;
        self.attrs.write().insert(((account_id, region.to_string()), name.clone()), attrs);
        self.core.share_doc(account_id, region, IDENTITY_ATTRIBUTES, &name).await;
        Ok(())
    }

    /// Forget an identity's attributes (the identity was deleted).
    pub(crate) async fn delete_identity_attributes(
        &self,
        account_id: i64,
        region: &str,
        identity: &str,
    ) -> Result<(), AdminError> {
        let name = identity.to_ascii_lowercase();
        if self.attrs.write().remove(&((account_id, region.to_string()), name.clone())).is_none() {
            return Ok(());
        }
        self.core
            .documents
            .replace((account_id, region, IDENTITY_ATTRIBUTES), &name, None, 0)
            .await
            .map_err(AdminError::from_store)?;
        self.core.share_doc(account_id, region, IDENTITY_ATTRIBUTES, &name).await;
        Ok(())
    }

    /// The default configuration set for mail from `source`: its address identity's, else its
    /// domain's.
    pub(crate) fn default_configuration_set(&self, account_id: i64, region: &str, source: &str) -> Option<String> {
        let attrs = self.attrs.read();
        // The common case, no identity with attributes, costs one read lock.
        if attrs.is_empty() {
            return None;
        }
        let key: RegionKey = (account_id, region.to_string());
        let addr = source.to_ascii_lowercase();
        let domain = addr.rsplit_once('@').map(|(_, d)| d.to_string());
        [Some(addr), domain]
            .into_iter()
            .flatten()
            .find_map(|i| attrs.get(&(key.clone(), i)).and_then(|a| a.configuration_set.clone()))
    }
}

impl Service {
    /// The tags of a resource.
    pub fn resource_tags(&self, account_id: i64, region: &str, arn: &str) -> Result<Vec<(String, String)>, AdminError> {
        match parse_arn(arn, region)? {
            Resource::Identity(i) => {
                self.directory.identity(account_id, region, &i).ok_or_else(|| not_found(arn))?;
                Ok(self.identity_settings.identity_attributes(account_id, region, &i).tags)
            }
            Resource::ConfigurationSet(n) => {
                Ok(self.resources.configuration_set(account_id, region, &n).ok_or_else(|| not_found(arn))?.tags)
            }
            Resource::ContactList(n) => {
                Ok(self.contacts.contact_list(account_id, region, &n)?.ok_or_else(|| not_found(arn))?.tags)
            }
        }
    }

    /// Change a resource's tags with `f` (which gets the current tags).
    pub async fn update_resource_tags(
        &self,
        account_id: i64,
        region: &str,
        arn: &str,
        f: impl FnOnce(&mut Vec<(String, String)>),
    ) -> Result<(), AdminError> {
        match parse_arn(arn, region)? {
            Resource::Identity(i) => {
                self.directory.identity(account_id, region, &i).ok_or_else(|| not_found(arn))?;
                let mut a = self.identity_settings.identity_attributes(account_id, region, &i);
                f(&mut a.tags);
                self.identity_settings.set_identity_attributes(account_id, region, &i, a).await
            }
            Resource::ConfigurationSet(n) => {
                let mut tags =
                    self.resources.configuration_set(account_id, region, &n).ok_or_else(|| not_found(arn))?.tags;
                f(&mut tags);
                check_tags(&tags)?;
                self.resources
                    .update_configuration_set(account_id, region, &n, |s| {
                        s.tags = tags;
                        Ok(())
                    })
                    .await
                    .map(|_| ())
            }
            Resource::ContactList(n) => {
                let mut tags = self.contacts.contact_list(account_id, region, &n)?.ok_or_else(|| not_found(arn))?.tags;
                f(&mut tags);
                check_tags(&tags)?;
                self.contacts.set_contact_list_tags(account_id, region, &n, tags).await
            }
        }
    }

    /// TagResource.
    pub async fn tag_resource(
        &self,
        account_id: i64,
        region: &str,
        arn: &str,
        add: Vec<(String, String)>,
    ) -> Result<(), AdminError> {
        check_tags(&add)?;
        self.update_resource_tags(account_id, region, arn, |t| merge(t, add)).await
    }

    /// UntagResource.
    pub async fn untag_resource(
        &self,
        account_id: i64,
        region: &str,
        arn: &str,
        keys: &[String],
    ) -> Result<(), AdminError> {
        self.update_resource_tags(account_id, region, arn, |t| t.retain(|(k, _)| !keys.contains(k))).await
    }
}

fn not_found(arn: &str) -> AdminError {
    AdminError::NotFound(format!("Resource not found: {arn}"))
}

/// Load every identity's attributes (at start).
fn load(
    documents: &weir_store::Documents,
) -> Result<std::collections::HashMap<(RegionKey, String), IdentityAttributes>, weir_store::StoreError> {
    let mut out = std::collections::HashMap::new();
    for (id, region, d) in documents.list_all(IDENTITY_ATTRIBUTES)? {
        if let Ok(a) = serde_json::from_str::<IdentityAttributes>(&d.doc) {
            out.insert(((id, region), d.name), a);
        }
    }
    Ok(out)
}
