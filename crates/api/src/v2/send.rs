//! v2 sends: SendEmail (Simple, Raw or Template content) and SendBulkEmail. They decode the
//! JSON into an [`Outgoing`]; the service builds and checks the message.

use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use weir_submit::template::TemplateParts;
use weir_submit::{BulkEntry, Outgoing, SubmitError, TemplateSource, V2_MAX_MESSAGE};

use super::{bad, ok, parse};
use crate::auth::Caller;
use crate::error::{ApiError, Flavor};
use crate::{AppState, RawRequest};

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Destination {
    #[serde(default)]
    to_addresses: Vec<String>,
    #[serde(default)]
    cc_addresses: Vec<String>,
    #[serde(default)]
    bcc_addresses: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Text {
    data: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Body {
    text: Option<Text>,
    html: Option<Text>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct NameValue {
    pub(super) name: String,
    pub(super) value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SimpleContent {
    subject: Option<Text>,
    body: Option<Body>,
    #[serde(default)]
    headers: Vec<NameValue>,
    #[serde(default)]
    attachments: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawContent {
    data: Option<String>,
}

/// v2 `EmailTemplateContent`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(super) struct TemplateContent {
    pub(super) subject: Option<String>,
    pub(super) text: Option<String>,
    pub(super) html: Option<String>,
}

impl From<TemplateContent> for TemplateParts {
    fn from(c: TemplateContent) -> TemplateParts {
        TemplateParts { subject: c.subject, text: c.text, html: c.html }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Template {
    template_name: Option<String>,
    template_arn: Option<String>,
    template_content: Option<TemplateContent>,
    template_data: Option<String>,
    #[serde(default)]
    headers: Vec<NameValue>,
    #[serde(default)]
    attachments: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EmailContent {
    simple: Option<SimpleContent>,
    raw: Option<RawContent>,
    template: Option<Template>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendEmailRequest {
    from_email_address: Option<String>,
    destination: Option<Destination>,
    #[serde(default)]
    reply_to_addresses: Vec<String>,
    content: Option<EmailContent>,
    #[serde(default)]
    email_tags: Vec<NameValue>,
    configuration_set_name: Option<String>,
    feedback_forwarding_email_address: Option<String>,
    list_management_options: Option<ListManagementOptions>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListManagementOptions {
    contact_list_name: Option<String>,
    topic_name: Option<String>,
}

fn headers(h: Vec<NameValue>) -> Vec<(String, String)> {
    h.into_iter().map(|h| (h.name, h.value)).collect()
}

/// The template a `Template` member names: by name, by ARN (its last path segment), or inline.
fn template_content(t: Template, bulk: bool) -> Result<weir_submit::Content, ApiError> {
    if !t.attachments.is_empty() {
        return Err(bad("Attachments in Template content are not supported by weir yet; send them as Raw content."));
    }
    let source = match (t.template_name, t.template_arn, t.template_content) {
        (Some(n), None, None) => TemplateSource::Named(n),
        (None, Some(arn), None) => TemplateSource::Named(arn.rsplit('/').next().unwrap_or_default().to_string()),
        (None, None, Some(c)) => TemplateSource::Inline(c.into()),
        (None, None, None) => {
            return Err(bad("Template must contain one of TemplateName, TemplateArn or TemplateContent."));
        }
        _ => return Err(bad("Template must contain only one of TemplateName, TemplateArn or TemplateContent.")),
    };
    let data = match t.template_data {
        Some(d) => d,
        None if bulk => "{}".to_string(),
        None => return Err(ApiError::missing(&["content.template.templateData"])),
    };
    Ok(weir_submit::Content::Template { template: source, data, headers: headers(t.headers) })
}

pub(super) async fn send_email(st: &AppState, caller: &Caller, raw: &RawRequest) -> Result<Response, ApiError> {
    let req: SendEmailRequest = parse(&raw.body)?;
    let content = req.content.ok_or_else(|| ApiError::missing(&["content"]))?;
    let dest = req.destination.unwrap_or_default();
    let content = match (content.simple, content.raw, content.template) {
        (Some(s), None, None) => {
            if req.from_email_address.is_none() {
                return Err(ApiError::missing(&["fromEmailAddress"]));
            }
            if !s.attachments.is_empty() {
                return Err(bad(
                    "Attachments in Simple content are not supported by weir yet; send them as Raw content.",
                ));
            }
            let subject =
                s.subject.and_then(|t| t.data).ok_or_else(|| ApiError::missing(&["content.simple.subject"]))?;
            let body = s.body.ok_or_else(|| ApiError::missing(&["content.simple.body"]))?;
            weir_submit::Content::Simple {
                subject,
                text: body.text.and_then(|t| t.data),
                html: body.html.and_then(|t| t.data),
                headers: headers(s.headers),
            }
        }
        (None, Some(r), None) => {
            let data = r.data.ok_or_else(|| ApiError::missing(&["content.raw.data"]))?;
            weir_submit::Content::Raw(crate::body::decode_blob(&data, "Content.Raw.Data")?)
        }
        (None, None, Some(t)) => {
            if req.from_email_address.is_none() {
                return Err(ApiError::missing(&["fromEmailAddress"]));
            }
            template_content(t, false)?
        }
        (None, None, None) => {
            return Err(bad("Content must contain exactly one of Simple, Raw or Template; it contains none."));
        }
        _ => {
            return Err(bad("Content must contain exactly one of Simple, Raw or Template; it contains more than one."));
        }
    };
    let mut out = Outgoing::new(&caller.region, "api-v2", V2_MAX_MESSAGE, content);
    out.source = req.from_email_address;
    (out.to, out.cc, out.bcc) = (dest.to_addresses, dest.cc_addresses, dest.bcc_addresses);
    out.reply_to = req.reply_to_addresses;
    out.tags = req.email_tags.into_iter().map(|t| (t.name, t.value)).collect();
    out.configuration_set = req.configuration_set_name;
    out.return_path = req.feedback_forwarding_email_address;
    if let Some(lm) = req.list_management_options {
        let list = lm.contact_list_name.ok_or_else(|| ApiError::missing(&["listManagementOptions.contactListName"]))?;
        out.list_management = Some(weir_submit::ListManagement { list, topic: lm.topic_name });
    }
    let id = st
        .svc
        .sending()
        .send(&caller.account, out)
        .await
        .map_err(|e| ApiError::from_submit(e, Flavor::V2, &st.cfg.v2_daily_quota_code))?;
    Ok(ok(json!({ "MessageId": id }), &raw.request_id))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BulkContent {
    template: Option<Template>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReplacementTemplate {
    replacement_template_data: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReplacementContent {
    replacement_template: Option<ReplacementTemplate>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BulkEmailEntry {
    destination: Option<Destination>,
    #[serde(default)]
    replacement_tags: Vec<NameValue>,
    replacement_email_content: Option<ReplacementContent>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendBulkEmailRequest {
    from_email_address: Option<String>,
    #[serde(default)]
    reply_to_addresses: Vec<String>,
    feedback_forwarding_email_address: Option<String>,
    #[serde(default)]
    default_email_tags: Vec<NameValue>,
    default_content: Option<BulkContent>,
    bulk_email_entries: Option<Vec<BulkEmailEntry>>,
    configuration_set_name: Option<String>,
}

pub(super) async fn send_bulk_email(st: &AppState, caller: &Caller, raw: &RawRequest) -> Result<Response, ApiError> {
    let req: SendBulkEmailRequest = parse(&raw.body)?;
    let mut absent = Vec::new();
    if req.default_content.is_none() {
        absent.push("defaultContent");
    }
    if req.bulk_email_entries.is_none() {
        absent.push("bulkEmailEntries");
    }
    if !absent.is_empty() {
        return Err(ApiError::missing(&absent));
    }
    let template =
        req.default_content.and_then(|c| c.template).ok_or_else(|| bad("DefaultContent must contain a Template."))?;
    if req.from_email_address.is_none() {
        return Err(ApiError::missing(&["fromEmailAddress"]));
    }
    let content = template_content(template, true)?;
    let entries: Vec<BulkEntry> = req
        .bulk_email_entries
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let d = e.destination.unwrap_or_default();
            BulkEntry {
                to: d.to_addresses,
                cc: d.cc_addresses,
                bcc: d.bcc_addresses,
                data: e
                    .replacement_email_content
                    .and_then(|c| c.replacement_template)
                    .and_then(|t| t.replacement_template_data),
                tags: e.replacement_tags.into_iter().map(|t| (t.name, t.value)).collect(),
            }
        })
        .collect();
    let mut out = Outgoing::new(&caller.region, "api-v2", V2_MAX_MESSAGE, content);
    out.source = req.from_email_address;
    out.reply_to = req.reply_to_addresses;
    out.tags = req.default_email_tags.into_iter().map(|t| (t.name, t.value)).collect();
    out.configuration_set = req.configuration_set_name;
    out.return_path = req.feedback_forwarding_email_address;
    let results = st
        .svc
        .sending()
        .send_bulk(&caller.account, out, entries)
        .await
        .map_err(|e| ApiError::from_submit(e, Flavor::V2, &st.cfg.v2_daily_quota_code))?;
    let results: Vec<Value> = results
        .into_iter()
        .map(|r| match r {
            Ok(id) => json!({"Status": "SUCCESS", "MessageId": id}),
            Err(e) => json!({"Status": bulk_status(&e), "Error": e.to_string()}),
        })
        .collect();
    Ok(ok(json!({ "BulkEmailEntryResults": results }), &raw.request_id))
}

/// SES v2's `BulkEmailStatus` of one failed entry.
fn bulk_status(e: &SubmitError) -> &'static str {
    match e {
        SubmitError::MessageRejected(_) => "MESSAGE_REJECTED",
        SubmitError::SendingPaused => "ACCOUNT_SENDING_PAUSED",
        SubmitError::DailyQuotaExceeded { .. } => "ACCOUNT_DAILY_QUOTA_EXCEEDED",
        SubmitError::MaxSendRateExceeded { .. } => "ACCOUNT_THROTTLED",
        SubmitError::ConfigurationSetDoesNotExist(_) => "CONFIGURATION_SET_NOT_FOUND",
        SubmitError::ConfigurationSetSendingPaused(_) => "CONFIGURATION_SET_SENDING_PAUSED",
        SubmitError::TemplateDoesNotExist(_) => "TEMPLATE_NOT_FOUND",
        SubmitError::InvalidParameter(_)
        | SubmitError::InvalidTemplate(..)
        | SubmitError::MissingRenderingAttribute(_)
        | SubmitError::InvalidRenderingParameter(_) => "INVALID_PARAMETER",
        SubmitError::Storage(_) | SubmitError::Unavailable { .. } | SubmitError::Busy(_) => "TRANSIENT_FAILURE",
    }
}
