//! Building messages: Simple, Template and Raw content become one [`Submission`] here, with every
//! check on addresses, size, headers and recipient count, for both API versions and SMTP.

use weir_mail::address::{Mailbox, parse_mailbox};
use weir_mail::compose::{Simple, compose};
use weir_mail::message_id::new_message_id;
use weir_mail::raw::prepare;
use weir_store::model::Account;

use std::sync::Arc;

use super::contacts::Contacts;
use super::core::Core;
use super::directory::Directory;
use super::mail_from::MailFromDomains;
use super::quota_gate::QuotaGate;
use super::resources::Resources;
use super::tags::IdentitySettings;
use super::{ListManagement, MAX_RECIPIENTS, Submission, SubmitError};
use crate::render_pool::RenderPool;

use crate::template::{Budget, Compiled, RenderError, Rendered, TemplateParts, merge, parse_data, request_budget};

/// Largest message through SES v1 (10 MiB).
pub const V1_MAX_MESSAGE: usize = 10 * 1024 * 1024;
/// Largest message through SES v2 and SMTP (40 MiB).
pub const V2_MAX_MESSAGE: usize = 40 * 1024 * 1024;

/// Which template a send uses.
#[derive(Debug, Clone)]
pub enum TemplateSource {
    /// A stored template, by name.
    Named(String),
    /// Parts given in the request (v2 `TemplateContent`).
    Inline(TemplateParts),
}

/// The content of a send.
#[derive(Debug, Clone)]
pub enum Content {
    /// Subject and bodies, composed into MIME here.
    Simple {
        /// Subject.
        subject: String,
        /// Text body.
        text: Option<String>,
        /// HTML body.
        html: Option<String>,
        /// Extra headers (v2).
        headers: Vec<(String, String)>,
    },
    /// A template and its data (a JSON object).
    Template {
        /// The template.
        template: TemplateSource,
        /// Replacement data, JSON.
        data: String,
        /// Extra headers (v2).
        headers: Vec<(String, String)>,
    },
    /// A complete MIME message.
    Raw(Vec<u8>),
}

/// A send request as a front door decoded it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Region the request is for.
    pub region: String,
    /// Front door (`api-v1`, `api-v2`, `smtp`).
    pub origin: &'static str,
    /// Largest message this front door takes.
    pub max_size: usize,
    /// Source / FromEmailAddress / MAIL FROM; raw messages default to their From header.
    pub source: Option<String>,
    /// To addresses (raw: explicit destinations; the headers' otherwise).
    pub to: Vec<String>,
    /// Cc addresses.
    pub cc: Vec<String>,
    /// Bcc addresses.
    pub bcc: Vec<String>,
    /// Reply-To addresses.
    pub reply_to: Vec<String>,
    /// The content.
    pub content: Content,
    /// Message tags.
    pub tags: Vec<(String, String)>,
    /// Configuration set.
    pub configuration_set: Option<String>,
    /// ReturnPath (v1) / FeedbackForwardingEmailAddress (v2): must be verified like the source.
    pub return_path: Option<String>,
    /// `ListManagementOptions` (v2): the contact list and topic the message belongs to.
    pub list_management: Option<ListManagement>,
}

impl Outgoing {
    /// A request with no addresses and the given content.
    pub fn new(region: &str, origin: &'static str, max_size: usize, content: Content) -> Outgoing {
        Outgoing {
            region: region.to_string(),
            origin,
            max_size,
            source: None,
            to: vec![],
            cc: vec![],
            bcc: vec![],
            reply_to: vec![],
            content,
            tags: vec![],
            configuration_set: None,
            return_path: None,
            list_management: None,
        }
    }
}

/// One destination of a bulk templated send.
#[derive(Debug, Clone, Default)]
pub struct BulkEntry {
    /// To addresses.
    pub to: Vec<String>,
    /// Cc addresses.
    pub cc: Vec<String>,
    /// Bcc addresses.
    pub bcc: Vec<String>,
    /// Replacement data merged over the default data.
    pub data: Option<String>,
    /// Tags added to the default tags.
    pub tags: Vec<(String, String)>,
}

/// What SES replaces with the recipient's unsubscribe URL in Simple content.
const UNSUBSCRIBE_PLACEHOLDER: &str = "{{amazonSESUnsubscribeUrl}}";
/// The same, as a template variable.
const UNSUBSCRIBE_VARIABLE: &str = "amazonSESUnsubscribeUrl";

/// RFC 8058 one-click unsubscribe headers.
fn one_click_headers(url: &str) -> [(String, String); 2] {
    [
        ("List-Unsubscribe".into(), format!("<{url}>")),
        ("List-Unsubscribe-Post".into(), "List-Unsubscribe=One-Click".into()),
    ]
}

/// Most destinations in one bulk send.
pub const MAX_BULK_DESTINATIONS: usize = 50;

fn mailbox(s: &str) -> Result<Mailbox, SubmitError> {
    parse_mailbox(s).map_err(|e| SubmitError::InvalidParameter(e.0))
}

fn mailboxes(list: &[String]) -> Result<Vec<Mailbox>, SubmitError> {
    list.iter().map(|s| mailbox(s)).collect()
}

fn too_long(len: usize, max: usize) -> SubmitError {
    SubmitError::InvalidParameter(format!("Message length is more than {max} bytes long: '{len}'."))
}

fn check_count(n: usize) -> Result<(), SubmitError> {
    if n > MAX_RECIPIENTS {
        return Err(SubmitError::InvalidParameter(format!("Recipient count exceeds {MAX_RECIPIENTS}.")));
    }
    Ok(())
}

/// Check SES tag names and values.
pub fn check_tags(tags: &[(String, String)]) -> Result<(), SubmitError> {
    let ok = |s: &str| {
        !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.@".contains(&b))
    };
    for (n, v) in tags {
        if !ok(n) {
            return Err(SubmitError::InvalidParameter(format!(
                "Invalid tag name '{n}': use 1-256 ASCII letters, digits, '_', '-', '.' or '@'."
            )));
        }
        if !ok(v) {
            return Err(SubmitError::InvalidParameter(format!(
                "Invalid tag value '{v}' for tag '{n}': use 1-256 ASCII letters, digits, '_', '-', '.' or '@'."
            )));
        }
    }
    Ok(())
}

/// What building a message gave.
enum Built {
    /// A message to admit.
    Message(Submission),
    /// The template could not be rendered: SES accepts the call, sends nothing and reports a
    /// Rendering Failure event.
    RenderingFailure {
        message_id: String,
        region: String,
        configuration_set: Option<String>,
        source: Mailbox,
        template: String,
        error: String,
    },
}

/// Sending: messages built from each kind of content, checked, admitted by the quota gate and
/// spooled.
pub struct Sending {
    pub(super) core: Arc<Core>,
    pub(super) directory: Arc<Directory>,
    pub(super) quotas: Arc<QuotaGate>,
    pub(super) resources: Arc<Resources>,
    pub(super) identity_settings: Arc<IdentitySettings>,
    pub(super) contacts: Arc<Contacts>,
    pub(super) mail_from: Arc<MailFromDomains>,
    /// Where templates are rendered.
    pub(super) renders: RenderPool,
    /// Domain for Message-ID headers.
    pub(super) id_domain: String,
    /// Configuration sets whose mail is bulk.
    pub(super) bulk_configuration_sets: Vec<String>,
}

impl Sending {
    /// Domain used in Message-ID headers.
    pub fn id_domain(&self) -> &str {
        &self.id_domain
    }

    /// Build, check and admit one message; returns its MessageId once it is durable.
    pub async fn send(&self, account: &Account, out: Outgoing) -> Result<String, SubmitError> {
        let template = match &out.content {
            Content::Template { template, .. } => Some(self.compile_template(account.id, &out.region, template)?),
            _ => None,
        };
        let mut budget = request_budget();
        let built = self.build(account.id, out, template.as_ref(), None, &mut budget).await?;
        self.admit_built(account, built).await
    }

    /// One templated message to each entry (at most 50), each with its own data merged over the
    /// default data and its own result. `out.to`/`cc`/`bcc` are ignored. Fails as a whole only
    /// for what fails every entry (a missing template, invalid default data).
    pub async fn send_bulk(
        &self,
        account: &Account,
        out: Outgoing,
        entries: Vec<BulkEntry>,
    ) -> Result<Vec<Result<String, SubmitError>>, SubmitError> {
        if entries.is_empty() || entries.len() > MAX_BULK_DESTINATIONS {
            return Err(SubmitError::InvalidParameter(format!(
                "The number of destinations must be between 1 and {MAX_BULK_DESTINATIONS}; it is {}.",
                entries.len()
            )));
        }
        let Content::Template { template, data, .. } = &out.content else {
            return Err(SubmitError::InvalidParameter("Bulk sends take template content only.".into()));
        };
        let template = self.compile_template(account.id, &out.region, template)?;
        let default = parse_data(data).map_err(|e| SubmitError::InvalidParameter(e.to_string()))?;
        if let Some(set) = &out.configuration_set {
            self.resources.require_configuration_set(account.id, &out.region, set)?;
        }
        // Every destination spends from one budget: a request's rendering is bounded as a whole.
        let mut budget = request_budget();
        let mut results = Vec::with_capacity(entries.len());
        for e in entries {
            let mut one = out.clone();
            (one.to, one.cc, one.bcc) = (e.to, e.cc, e.bcc);
            one.tags.extend(e.tags);
            let data = match e.data.as_deref().map(parse_data).transpose() {
                Ok(r) => r.map(|r| merge(&default, &r)).unwrap_or_else(|| default.clone()),
                Err(err) => {
                    results.push(Err(SubmitError::InvalidParameter(err.to_string())));
                    continue;
                }
            };
            let r = match self.build(account.id, one, Some(&template), Some(data), &mut budget).await {
                Ok(built) => self.admit_built(account, built).await,
                Err(e) => Err(e),
            };
            results.push(r);
        }
        Ok(results)
    }

    /// Render a stored template with `data`, as SES's TestRenderTemplate does: the MIME message
    /// it would send, without addresses.
    pub async fn test_render(
        &self,
        account_id: i64,
        region: &str,
        name: &str,
        data: &str,
    ) -> Result<String, SubmitError> {
        let (_, compiled) = self.compile_template(account_id, region, &TemplateSource::Named(name.to_string()))?;
        let value = parse_data(data).map_err(|e| SubmitError::InvalidRenderingParameter(e.to_string()))?;
        let (r, _) = self.render_on_pool(account_id, compiled, value, request_budget()).await?;
        let r = r.map_err(|e| match e {
            RenderError::MissingAttribute(a) => SubmitError::MissingRenderingAttribute(a),
            RenderError::InvalidData(m) | RenderError::TooMuchWork(m) => SubmitError::InvalidRenderingParameter(m),
            e @ RenderError::OutputTooLarge(_) => SubmitError::InvalidRenderingParameter(e.to_string()),
            RenderError::InvalidTemplate(m) => SubmitError::InvalidTemplate(name.to_string(), m),
        })?;
        let now_ms = self.core.now_ms();
        let id = new_message_id(now_ms as u64);
        let mime = compose(&Simple {
            from: None,
            to: &[],
            cc: &[],
            reply_to: &[],
            subject: &r.subject,
            text: r.text.as_deref(),
            html: r.html.as_deref(),
            headers: &[],
            message_id: &id,
            id_domain: self.id_domain(),
            date_secs: now_ms / 1000,
        })
        .map_err(|e| SubmitError::InvalidRenderingParameter(e.0))?;
        Ok(String::from_utf8_lossy(&mime).into_owned())
    }

    fn compile_template(
        &self,
        account_id: i64,
        region: &str,
        source: &TemplateSource,
    ) -> Result<(String, Arc<Compiled>), SubmitError> {
        let (name, parts) = match source {
            TemplateSource::Named(name) => (name.clone(), self.resources.template(account_id, region, name)?),
            TemplateSource::Inline(parts) => (String::new(), parts.clone()),
        };
        let compiled = Compiled::new(&parts).map_err(|e| SubmitError::InvalidTemplate(name.clone(), e.to_string()))?;
        Ok((name, Arc::new(compiled)))
    }

    /// Render on the bounded render pool (never on the async workers); the budget comes back
    /// with what is left of it.
    async fn render_on_pool(
        &self,
        account_id: i64,
        compiled: Arc<Compiled>,
        data: serde_json::Value,
        mut budget: Budget,
    ) -> Result<(Result<Rendered, RenderError>, Budget), SubmitError> {
        self.renders
            .run(account_id, move || {
                let r = compiled.render_value(&data, &mut budget);
                (r, budget)
            })
            .await
            .map_err(|e| SubmitError::Busy(e.to_string()))
    }

    /// Turn a request into a message. `data` overrides the request's template data (bulk).
    async fn build(
        &self,
        account_id: i64,
        out: Outgoing,
        template: Option<&(String, Arc<Compiled>)>,
        data: Option<serde_json::Value>,
        budget: &mut Budget,
    ) -> Result<Built, SubmitError> {
        let now_ms = self.core.now_ms();
        let id = new_message_id(now_ms as u64);
        if let Content::Raw(bytes) = &out.content {
            return self.build_raw(account_id, &out, bytes, id, now_ms).map(Built::Message);
        }
        let source = mailbox(out.source.as_deref().unwrap_or_default())?;
        let (to, cc, bcc, reply_to) =
            (mailboxes(&out.to)?, mailboxes(&out.cc)?, mailboxes(&out.bcc)?, mailboxes(&out.reply_to)?);
        check_count(to.len() + cc.len() + bcc.len())?;
        check_tags(&out.tags)?;
        let recipients: Vec<String> = to.iter().chain(&cc).chain(&bcc).map(|m| m.addr.clone()).collect();
        let list = self.list_links(account_id, &out, &id, &recipients)?;
        let url = list.as_ref().map(|(url, _)| url.as_str());
        let with_url = |s: &Option<String>| match (s, url) {
            (Some(s), Some(u)) => Some(s.replace(UNSUBSCRIBE_PLACEHOLDER, u)),
            (s, _) => s.clone(),
        };
        let (subject, text, html, mut headers) = match &out.content {
            Content::Simple { subject, text, html, headers } => {
                (subject.clone(), with_url(text), with_url(html), headers.clone())
            }
            Content::Template { data: request_data, headers, .. } => {
                let Some((name, compiled)) = template else {
                    return Err(SubmitError::InvalidParameter("Template content needs a template.".into()));
                };
                let mut value = match data {
                    Some(d) => d,
                    None => parse_data(request_data).map_err(|e| SubmitError::InvalidParameter(e.to_string()))?,
                };
                if let (Some(u), Some(o)) = (url, value.as_object_mut()) {
                    o.insert(UNSUBSCRIBE_VARIABLE.into(), serde_json::Value::String(u.to_string()));
                }
                let spent = std::mem::replace(budget, Budget::new(0, 0, None));
                let (result, left) = self.render_on_pool(account_id, compiled.clone(), value, spent).await?;
                *budget = left;
                let rendered = match result {
                    Ok(r) => r,
                    Err(RenderError::InvalidData(m) | RenderError::TooMuchWork(m)) => {
                        return Err(SubmitError::InvalidParameter(m));
                    }
                    Err(e @ RenderError::OutputTooLarge(_)) => {
                        return Err(SubmitError::InvalidParameter(e.to_string()));
                    }
                    Err(e) => {
                        return Ok(Built::RenderingFailure {
                            message_id: id,
                            region: out.region,
                            configuration_set: out.configuration_set,
                            source,
                            template: name.to_string(),
                            error: e.to_string(),
                        });
                    }
                };
                (rendered.subject, rendered.text, rendered.html, headers.clone())
            }
            Content::Raw(_) => unreachable!("handled above"),
        };
        if let Some(u) = url {
            headers.extend(one_click_headers(u));
        }
        let mime = compose(&Simple {
            from: Some(&source),
            to: &to,
            cc: &cc,
            reply_to: &reply_to,
            subject: &subject,
            text: text.as_deref(),
            html: html.as_deref(),
            headers: &headers,
            message_id: &id,
            id_domain: self.id_domain(),
            date_secs: now_ms / 1000,
        })
        .map_err(|e| SubmitError::InvalidParameter(e.0))?;
        if mime.len() > out.max_size {
            return Err(too_long(mime.len(), out.max_size));
        }
        Ok(Built::Message(Submission {
            region: out.region,
            message_id: id,
            source,
            header_senders: out.return_path.as_deref().map(mailbox).transpose()?.into_iter().collect(),
            recipients,
            mime,
            configuration_set: out.configuration_set,
            tags: out.tags,
            origin: out.origin,
            unsubscribed: list.map(|(_, u)| u).unwrap_or_default(),
        }))
    }

    fn build_raw(
        &self,
        account_id: i64,
        out: &Outgoing,
        data: &[u8],
        id: String,
        now_ms: i64,
    ) -> Result<Submission, SubmitError> {
        if data.len() > out.max_size {
            return Err(too_long(data.len(), out.max_size));
        }
        let destinations: Vec<Mailbox> =
            mailboxes(&out.to)?.into_iter().chain(mailboxes(&out.cc)?).chain(mailboxes(&out.bcc)?).collect();
        let prepared =
            prepare(data, &id, self.id_domain(), now_ms / 1000).map_err(|e| SubmitError::InvalidParameter(e.0))?;
        let source = match &out.source {
            Some(s) => mailbox(s)?,
            None => prepared.from.clone(),
        };
        let recipients: Vec<String> = if destinations.is_empty() {
            prepared.header_recipients.clone()
        } else {
            destinations.into_iter().map(|m| m.addr).collect()
        };
        check_count(recipients.len())?;
        let tags: Vec<(String, String)> = out.tags.iter().cloned().chain(prepared.tags).collect();
        check_tags(&tags)?;
        let mut header_senders = prepared.senders;
        if let Some(rp) = &out.return_path {
            header_senders.push(mailbox(rp)?);
        }
        let list = self.list_links(account_id, out, &id, &recipients)?;
        let mut mime = prepared.bytes;
        if let Some((url, _)) = &list {
            let mut top = String::new();
            for (name, value) in one_click_headers(url) {
                top.push_str(&format!("{name}: {value}\r\n"));
            }
            mime.splice(0..0, top.into_bytes());
        }
        Ok(Submission {
            region: out.region.clone(),
            message_id: id,
            source,
            header_senders,
            recipients,
            mime,
            configuration_set: out.configuration_set.clone().or(prepared.configuration_set),
            tags,
            origin: out.origin,
            unsubscribed: list.map(|(_, u)| u).unwrap_or_default(),
        })
    }

    /// With list management: the recipient's one-click unsubscribe URL and the recipients who
    /// unsubscribed. The link is personal, so such a message has one recipient.
    fn list_links(
        &self,
        account_id: i64,
        out: &Outgoing,
        message_id: &str,
        recipients: &[String],
    ) -> Result<Option<(String, Vec<String>)>, SubmitError> {
        let Some(lm) = &out.list_management else { return Ok(None) };
        let [rcpt] = recipients else {
            return Err(SubmitError::InvalidParameter(format!(
                "A message with ListManagementOptions goes to exactly one recipient (its unsubscribe link is \
                 personal); this one has {}.",
                recipients.len()
            )));
        };
        let unsubscribed = self.contacts.unsubscribed(account_id, &out.region, lm, recipients)?;
        let url = self.contacts.unsubscribe_url(
            account_id,
            &out.region,
            lm,
            rcpt,
            message_id,
            out.configuration_set.as_deref(),
        );
        Ok(Some((url, unsubscribed)))
    }

    async fn admit_built(&self, account: &Account, built: Built) -> Result<String, SubmitError> {
        match built {
            Built::Message(sub) => self.submit(account, sub).await,
            Built::RenderingFailure { message_id, region, configuration_set, source, template, error } => {
                // The call is refused only for what would refuse any send from this source.
                self.precheck(account, &region, &source).await?;
                if let Some(set) = &configuration_set {
                    self.resources.require_configuration_set(account.id, &region, set)?;
                }
                tracing::info!(message_id = %message_id, account = %account.name, template = %template, error = %error, "not sent: the template could not be rendered");
                if let Some(ev) = &self.core.events {
                    let mail = weir_store::events::MailInfo {
                        message_id: message_id.clone(),
                        source: source.addr,
                        timestamp_ms: self.core.now_ms(),
                        account: account.name.clone(),
                        region,
                        configuration_set,
                    };
                    ev.rendering_failure(&mail, &template, &error);
                }
                Ok(message_id)
            }
        }
    }
}
