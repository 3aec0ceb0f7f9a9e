//! Contact lists, topics and contacts, as SES v2 keeps them, and what list management does to a
//! send: one-click unsubscribe headers (RFC 8058), a signed unsubscribe link, and no delivery to
//! contacts who unsubscribed.

use serde::{Deserialize, Serialize};
use weir_store::model::{Doc, Put};

use std::sync::Arc;

use super::core::Core;
use super::directory::Directory;
use super::{AdminError, SubmitError};

const CONTACT_LIST: &str = "contact-list";

/// SES's limit: one contact list per account and region.
pub const MAX_CONTACT_LISTS: usize = 1;

/// Associated data of unsubscribe tokens: a token sealed for anything else does not open as one.
const TOKEN_AAD: &[u8] = b"weir unsubscribe link v2";

fn token_sealer(secret: &[u8]) -> weir_cluster::seal::Sealer {
    weir_cluster::seal::Sealer::derived(secret, "weir: unsubscribe links")
}

fn contacts_kind(list: &str) -> String {
    format!("contact:{list}")
}

/// A topic of a contact list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    /// Its name.
    pub name: String,
    /// Shown to contacts.
    pub display_name: String,
    /// Longer text.
    pub description: Option<String>,
    /// `OPT_IN` or `OPT_OUT`: a contact's status where it has no preference of its own.
    pub default_status: String,
}

/// A contact list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactList {
    /// Its name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Topics.
    pub topics: Vec<Topic>,
    /// Tags.
    pub tags: Vec<(String, String)>,
    /// Created, Unix ms (from the store).
    #[serde(skip)]
    pub created_ms: i64,
    /// Last changed, Unix ms (from the store).
    #[serde(skip)]
    pub updated_ms: i64,
}

/// A contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The address (lower-cased).
    pub email: String,
    /// Explicit preferences: (topic, `OPT_IN`/`OPT_OUT`).
    pub topic_preferences: Vec<(String, String)>,
    /// Unsubscribed from every topic.
    pub unsubscribe_all: bool,
    /// The caller's JSON attributes.
    pub attributes: Option<String>,
    /// Created, Unix ms.
    #[serde(skip)]
    pub created_ms: i64,
    /// Last changed, Unix ms.
    #[serde(skip)]
    pub updated_ms: i64,
}

impl Contact {
    /// Whether mail on `topic` (or, without one, any list mail) may go to this contact.
    pub fn subscribed(&self, list: &ContactList, topic: Option<&str>) -> bool {
        if self.unsubscribe_all {
            return false;
        }
        match topic {
            None => true,
            Some(t) => status_for(list, Some(self), t) == "OPT_IN",
        }
    }
}

/// A contact's (or a non-contact's) status for a topic: its own preference, else the default.
pub fn status_for(list: &ContactList, contact: Option<&Contact>, topic: &str) -> String {
    contact
        .and_then(|c| c.topic_preferences.iter().find(|(t, _)| t == topic).map(|(_, s)| s.clone()))
        .or_else(|| list.topics.iter().find(|t| t.name == topic).map(|t| t.default_status.clone()))
        .unwrap_or_else(|| "OPT_IN".into())
}

/// `ListManagementOptions` of a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListManagement {
    /// The contact list.
    pub list: String,
    /// The topic, if any.
    pub topic: Option<String>,
}

fn check_status(s: &str) -> Result<(), AdminError> {
    if s == "OPT_IN" || s == "OPT_OUT" {
        Ok(())
    } else {
        Err(AdminError::Invalid(format!(
            "1 validation error detected: Value '{s}' at 'subscriptionStatus' failed to satisfy constraint: \
             Member must satisfy enum value set: [OPT_IN, OPT_OUT]"
        )))
    }
}

fn list_of(d: &Doc) -> Option<ContactList> {
    let mut l: ContactList = serde_json::from_str(&d.doc).ok()?;
    (l.created_ms, l.updated_ms) = (d.created_ms, d.updated_ms);
    Some(l)
}

fn contact_of(d: &Doc) -> Option<Contact> {
    let mut c: Contact = serde_json::from_str(&d.doc).ok()?;
    (c.created_ms, c.updated_ms) = (d.created_ms, d.updated_ms);
    Some(c)
}

fn no_list(name: &str) -> AdminError {
    AdminError::NotFound(format!("List with name {name} does not exist."))
}

/// Contact lists and their contacts (stored as documents), and unsubscribe links.
pub struct Contacts {
    core: Arc<Core>,
    directory: Arc<Directory>,
    /// Base URL and key of unsubscribe links.
    unsubscribe: Option<(String, Vec<u8>)>,
}

impl Contacts {
    pub(crate) fn new(core: Arc<Core>, directory: Arc<Directory>, unsubscribe: Option<(String, Vec<u8>)>) -> Self {
        Contacts { core, directory, unsubscribe }
    }

    /// Create a contact list (SES allows one per account and region).
    pub async fn create_contact_list(
        &self,
        account_id: i64,
        region: &str,
        list: ContactList,
    ) -> Result<(), AdminError> {
        super::resources::check_name("contact list", &list.name)?;
        self.check_topics(&list.topics)?;
        if self.contact_lists(account_id, region)?.len() >= MAX_CONTACT_LISTS
            && self.contact_list(account_id, region, &list.name)?.is_none()
        {
            return Err(AdminError::LimitExceeded(format!(
                "An account can have at most {MAX_CONTACT_LISTS} contact list per region."
            )));
        }
        self.write_list(account_id, region, list, Put::Create).await
    }

    fn check_topics(&self, topics: &[Topic]) -> Result<(), AdminError> {
        for (i, t) in topics.iter().enumerate() {
            super::resources::check_name("topic", &t.name)?;
            check_status(&t.default_status)?;
            if topics[..i].iter().any(|o| o.name == t.name) {
                return Err(AdminError::Invalid(format!("Topic {} is listed twice.", t.name)));
            }
        }
        Ok(())
    }

    async fn write_list(&self, account_id: i64, region: &str, list: ContactList, mode: Put) -> Result<(), AdminError> {
        let doc = serde_json::to_string(&list).map_err(|e| AdminError::Invalid(e.to_string()))?;
        let (r, n, now) = (region.to_string(), list.name.clone(), self.core.now_ms());
        let what = format!("List with name {}", list.name);
        let name = list.name.clone();
        self.core
            .documents
            .put((account_id, &r, CONTACT_LIST), &n, doc, now, mode, &what)
            .await
            .map_err(AdminError::from_store)?;
        self.core.share_doc(account_id, region, CONTACT_LIST, &name).await;
        Ok(())
    }

    /// A contact list.
    pub fn contact_list(&self, account_id: i64, region: &str, name: &str) -> Result<Option<ContactList>, AdminError> {
        let d = self.core.documents.get((account_id, region, CONTACT_LIST), name)?;
        Ok(d.as_ref().and_then(list_of))
    }

    /// Every contact list, by name.
    pub fn contact_lists(&self, account_id: i64, region: &str) -> Result<Vec<ContactList>, AdminError> {
        let all = self.core.documents.list((account_id, region, CONTACT_LIST))?;
        Ok(all.iter().filter_map(list_of).collect())
    }

    /// Replace a list's topics and description.
    pub async fn update_contact_list(
        &self,
        account_id: i64,
        region: &str,
        name: &str,
        topics: Option<Vec<Topic>>,
        description: Option<String>,
    ) -> Result<(), AdminError> {
        let mut list = self.contact_list(account_id, region, name)?.ok_or_else(|| no_list(name))?;
        if let Some(t) = topics {
            self.check_topics(&t)?;
            list.topics = t;
        }
        if description.is_some() {
            list.description = description;
        }
        self.write_list(account_id, region, list, Put::Update).await
    }

    /// Replace a list's tags.
    pub(crate) async fn set_contact_list_tags(
        &self,
        account_id: i64,
        region: &str,
        name: &str,
        tags: Vec<(String, String)>,
    ) -> Result<(), AdminError> {
        let mut list = self.contact_list(account_id, region, name)?.ok_or_else(|| no_list(name))?;
        list.tags = tags;
        self.write_list(account_id, region, list, Put::Update).await
    }

    /// Delete a list and its contacts.
    pub async fn delete_contact_list(&self, account_id: i64, region: &str, name: &str) -> Result<(), AdminError> {
        let what = format!("List with name {name}");
        self.core
            .documents
            .delete_with_kind((account_id, region, CONTACT_LIST), name, &what, &contacts_kind(name))
            .await
            .map_err(AdminError::from_store)?;
        self.core.share_doc(account_id, region, CONTACT_LIST, name).await;
        self.core.share_cleared(account_id, region, &contacts_kind(name)).await;
        Ok(())
    }

    /// Create (`update` false) or replace a contact.
    pub async fn put_contact(
        &self,
        account_id: i64,
        region: &str,
        list: &str,
        mut contact: Contact,
        update: bool,
    ) -> Result<(), AdminError> {
        let l = self.contact_list(account_id, region, list)?.ok_or_else(|| no_list(list))?;
        weir_mail::address::validate_addr(&contact.email).map_err(|e| AdminError::Invalid(e.0))?;
        contact.email = contact.email.to_ascii_lowercase();
        for (t, s) in &contact.topic_preferences {
            check_status(s)?;
            if !l.topics.iter().any(|x| &x.name == t) {
                return Err(AdminError::Invalid(format!("Topic {t} does not exist in list {list}.")));
            }
        }
        if let Some(a) = &contact.attributes
            && serde_json::from_str::<serde_json::Value>(a).is_err()
        {
            return Err(AdminError::Invalid("AttributesData must be valid JSON.".into()));
        }
        let doc = serde_json::to_string(&contact).map_err(|e| AdminError::Invalid(e.to_string()))?;
        let (r, kind, now) = (region.to_string(), contacts_kind(list), self.core.now_ms());
        let what = format!("Contact {}", contact.email);
        let mode = if update { Put::Update } else { Put::Create };
        let (k, email) = (kind.clone(), contact.email.clone());
        self.core
            .documents
            .put((account_id, &r, &kind), &contact.email, doc, now, mode, &what)
            .await
            .map_err(AdminError::from_store)?;
        self.core.share_doc(account_id, region, &k, &email).await;
        Ok(())
    }

    /// A contact of a list.
    pub fn contact(
        &self,
        account_id: i64,
        region: &str,
        list: &str,
        email: &str,
    ) -> Result<Option<Contact>, AdminError> {
        let kind = contacts_kind(list);
        let d = self.core.documents.get((account_id, region, &kind), &email.to_ascii_lowercase())?;
        Ok(d.as_ref().and_then(contact_of))
    }

    /// Every contact of a list, by address.
    pub fn contacts(&self, account_id: i64, region: &str, list: &str) -> Result<Vec<Contact>, AdminError> {
        let kind = contacts_kind(list);
        let all = self.core.documents.list((account_id, region, &kind))?;
        Ok(all.iter().filter_map(contact_of).collect())
    }

    /// Delete a contact.
    pub async fn delete_contact(
        &self,
        account_id: i64,
        region: &str,
        list: &str,
        email: &str,
    ) -> Result<(), AdminError> {
        let (r, kind, e) = (region.to_string(), contacts_kind(list), email.to_ascii_lowercase());
        let what = format!("Contact {e}");
        let (k, address) = (kind.clone(), e.clone());
        self.core.documents.delete((account_id, &r, &kind), &e, &what).await.map_err(AdminError::from_store)?;
        self.core.share_doc(account_id, region, &k, &address).await;
        Ok(())
    }

    /// For a send with list management: the list must exist (and the topic in it); returns the
    /// recipients that unsubscribed.
    pub(crate) fn unsubscribed(
        &self,
        account_id: i64,
        region: &str,
        lm: &ListManagement,
        recipients: &[String],
    ) -> Result<Vec<String>, SubmitError> {
        let storage = |e: AdminError| match e {
            AdminError::Storage(s) => SubmitError::Storage(s),
            other => SubmitError::InvalidParameter(other.to_string()),
        };
        let list = self
            .contact_list(account_id, region, &lm.list)
            .map_err(storage)?
            .ok_or_else(|| SubmitError::InvalidParameter(format!("List with name {} does not exist.", lm.list)))?;
        if let Some(t) = &lm.topic
            && !list.topics.iter().any(|x| &x.name == t)
        {
            return Err(SubmitError::InvalidParameter(format!("Topic {t} does not exist in list {}.", lm.list)));
        }
        let mut out = Vec::new();
        for r in recipients {
            let c = self.contact(account_id, region, &lm.list, r).map_err(storage)?;
            let ok = match &c {
                Some(c) => c.subscribed(&list, lm.topic.as_deref()),
                None => lm.topic.as_deref().is_none_or(|t| status_for(&list, None, t) == "OPT_IN"),
            };
            if !ok {
                out.push(r.clone());
            }
        }
        Ok(out)
    }

    /// The one-click unsubscribe URL of `recipient` of message `message_id` (sent with list
    /// management and, maybe, a configuration set, whose destinations get the Subscription event).
    pub fn unsubscribe_url(
        &self,
        account_id: i64,
        region: &str,
        lm: &ListManagement,
        recipient: &str,
        message_id: &str,
        configuration_set: Option<&str>,
    ) -> String {
        let (base, secret) = self.unsubscribe.clone().unwrap_or_default();
        let payload = serde_json::json!([
            account_id,
            region,
            lm.list,
            lm.topic,
            recipient.to_ascii_lowercase(),
            message_id,
            configuration_set
        ])
        .to_string();
        // Sealed, not only signed: the link shows nothing of the account, list or message.
        let sealed = token_sealer(&secret).seal(TOKEN_AAD, payload.as_bytes());
        use base64::Engine as _;
        let t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed);
        format!("{}/unsubscribe/{t}", base.trim_end_matches('/'))
    }

    /// Follow an unsubscribe link (the token after `/unsubscribe/`): the contact's topic (or
    /// every topic) becomes `OPT_OUT`, and a Subscription event says so. Returns the address and
    /// list, or `None` for a link that is not genuine.
    pub async fn unsubscribe(&self, token: &str, source: &str) -> Result<Option<(String, String)>, AdminError> {
        use base64::Engine as _;
        let Some(sealed) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).ok() else { return Ok(None) };
        let secret = self.unsubscribe.as_ref().map(|(_, s)| s.clone()).unwrap_or_default();
        let Ok(payload) = token_sealer(&secret).open(TOKEN_AAD, &sealed) else { return Ok(None) };
        type Payload = (i64, String, String, Option<String>, String, String, Option<String>);
        let Ok((account_id, region, list, topic, email, message_id, configuration_set)) =
            serde_json::from_slice::<Payload>(&payload)
        else {
            return Ok(None);
        };
        let Some(l) = self.contact_list(account_id, &region, &list)? else { return Ok(None) };
        let old = self.contact(account_id, &region, &list, &email)?;
        // Followed again (a replay, a second click): nothing changes, nothing is announced.
        let already = match &topic {
            Some(t) => old.as_ref().is_some_and(|c| c.unsubscribe_all) || status_for(&l, old.as_ref(), t) == "OPT_OUT",
            None => old.as_ref().is_some_and(|c| c.unsubscribe_all),
        };
        if already {
            return Ok(Some((email, list)));
        }
        let mut c = old.clone().unwrap_or(Contact {
            email: email.clone(),
            topic_preferences: vec![],
            unsubscribe_all: false,
            attributes: None,
            created_ms: 0,
            updated_ms: 0,
        });
        match &topic {
            Some(t) => {
                c.topic_preferences.retain(|(x, _)| x != t);
                c.topic_preferences.push((t.clone(), "OPT_OUT".into()));
            }
            None => c.unsubscribe_all = true,
        }
        self.put_contact(account_id, &region, &list, c.clone(), old.is_some()).await?;
        let account = self.directory.account_by_id(account_id).map(|a| a.name.clone()).unwrap_or_default();
        tracing::info!(%account, %region, %list, contact = %email, topic = ?topic, "unsubscribed");
        if let Some(ev) = &self.core.events {
            let prefs = |c: Option<&Contact>| {
                serde_json::json!({
                    "unsubscribeAll": c.is_some_and(|c| c.unsubscribe_all),
                    "topicSubscriptionStatus": l.topics.iter().map(|t| serde_json::json!({
                        "topicName": t.name,
                        "subscriptionStatus": if status_for(&l, c, &t.name) == "OPT_IN" { "OptIn" } else { "OptOut" },
                    })).collect::<Vec<_>>(),
                })
            };
            let now = self.core.now_ms();
            let mail = weir_store::events::MailInfo {
                message_id,
                source: String::new(),
                timestamp_ms: now,
                account,
                region: region.clone(),
                configuration_set,
            };
            ev.subscription(&mail, &email, &list, source, now, prefs(old.as_ref()), prefs(Some(&c)));
        }
        Ok(Some((email, list)))
    }
}
