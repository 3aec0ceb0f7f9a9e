//! v1 sends: SendEmail, SendRawEmail, SendTemplatedEmail, SendBulkTemplatedEmail. They decode
//! the Query parameters into an [`Outgoing`]; the service builds and checks the message.

use axum::response::Response;
use weir_submit::{BulkEntry, Content, Outgoing, SubmitError, TemplateSource, V1_MAX_MESSAGE};

use super::{Cx, required, tags};
use crate::error::{ApiError, Flavor};
use crate::xml::{self, el};

fn outgoing(cx: &Cx<'_>, content: Content) -> Outgoing {
    let p = cx.p;
    let mut o = Outgoing::new(cx.region, "api-v1", V1_MAX_MESSAGE, content);
    o.source = p.get("Source").map(str::to_string);
    o.to = p.list("Destination.ToAddresses");
    o.cc = p.list("Destination.CcAddresses");
    o.bcc = p.list("Destination.BccAddresses");
    o.reply_to = p.list("ReplyToAddresses");
    o.tags = tags(p);
    o.configuration_set = p.get("ConfigurationSetName").map(str::to_string);
    o.return_path = p.get("ReturnPath").map(str::to_string);
    o
}

async fn send(cx: &Cx<'_>, out: Outgoing) -> Result<Response, ApiError> {
    let id =
        cx.svc.sending().send(&cx.caller.account, out).await.map_err(|e| ApiError::from_submit(e, Flavor::V1, ""))?;
    Ok(xml::ok(cx.action, Some(&el("MessageId", &id)), cx.rid))
}

/// Members SES requires, in its lower-camel spelling, that the request lacks.
fn missing(cx: &Cx<'_>, members: &[(&str, &'static str)]) -> Result<(), ApiError> {
    let absent: Vec<&str> =
        members.iter().filter(|(key, _)| cx.p.get(key).is_none() && !cx.p.has(key)).map(|(_, m)| *m).collect();
    if absent.is_empty() { Ok(()) } else { Err(ApiError::missing(&absent)) }
}

pub(super) async fn send_email(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let p = cx.p;
    let mut needed = vec![("Source", "source"), ("Destination", "destination"), ("Message", "message")];
    if p.has("Message") {
        needed.extend([("Message.Subject.Data", "message.subject"), ("Message.Body", "message.body")]);
    }
    missing(cx, &needed)?;
    let content = Content::Simple {
        subject: p.get("Message.Subject.Data").unwrap_or_default().to_string(),
        text: p.get("Message.Body.Text.Data").map(str::to_string),
        html: p.get("Message.Body.Html.Data").map(str::to_string),
        headers: vec![],
    };
    send(cx, outgoing(cx, content)).await
}

pub(super) async fn send_raw_email(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let data = required(cx.p, "RawMessage.Data", "rawMessage.data")?;
    let mut out = outgoing(cx, Content::Raw(crate::body::decode_blob(data, "RawMessage.Data")?));
    out.to = cx.p.list("Destinations");
    send(cx, out).await
}

pub(super) async fn send_templated_email(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let p = cx.p;
    missing(
        cx,
        &[
            ("Source", "source"),
            ("Destination", "destination"),
            ("Template", "template"),
            ("TemplateData", "templateData"),
        ],
    )?;
    let content = Content::Template {
        template: TemplateSource::Named(p.get("Template").unwrap_or_default().to_string()),
        data: p.get("TemplateData").unwrap_or_default().to_string(),
        headers: vec![],
    };
    send(cx, outgoing(cx, content)).await
}

pub(super) async fn send_bulk_templated_email(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let p = cx.p;
    missing(
        cx,
        &[
            ("Source", "source"),
            ("Template", "template"),
            ("DefaultTemplateData", "defaultTemplateData"),
            ("Destinations", "destinations"),
        ],
    )?;
    let mut entries = Vec::new();
    for i in 1.. {
        let base = format!("Destinations.member.{i}");
        if !p.has(&base) {
            break;
        }
        let rtags = p
            .struct_list(&format!("{base}.ReplacementTags"), &["Name", "Value"])
            .into_iter()
            .map(|mut r| (r[0].take().unwrap_or_default(), r[1].take().unwrap_or_default()))
            .collect();
        entries.push(BulkEntry {
            to: p.list(&format!("{base}.Destination.ToAddresses")),
            cc: p.list(&format!("{base}.Destination.CcAddresses")),
            bcc: p.list(&format!("{base}.Destination.BccAddresses")),
            data: p.get(&format!("{base}.ReplacementTemplateData")).map(str::to_string),
            tags: rtags,
        });
    }
    let content = Content::Template {
        template: TemplateSource::Named(p.get("Template").unwrap_or_default().to_string()),
        data: p.get("DefaultTemplateData").unwrap_or_default().to_string(),
        headers: vec![],
    };
    let mut out = outgoing(cx, content);
    out.tags = p
        .struct_list("DefaultTags", &["Name", "Value"])
        .into_iter()
        .map(|mut r| (r[0].take().unwrap_or_default(), r[1].take().unwrap_or_default()))
        .collect();
    let results = cx
        .svc
        .sending()
        .send_bulk(&cx.caller.account, out, entries)
        .await
        .map_err(|e| ApiError::from_submit(e, Flavor::V1, ""))?;
    let inner: String = results
        .into_iter()
        .map(|r| match r {
            Ok(id) => format!("<member><Status>Success</Status>{}</member>", el("MessageId", &id)),
            Err(e) => format!("<member><Status>{}</Status>{}</member>", bulk_status(&e), el("Error", &e.to_string())),
        })
        .collect();
    Ok(xml::ok(cx.action, Some(&format!("<Status>{inner}</Status>")), cx.rid))
}

/// SES v1's `BulkEmailStatus` of one failed destination.
fn bulk_status(e: &SubmitError) -> &'static str {
    match e {
        SubmitError::MessageRejected(_) => "MessageRejected",
        SubmitError::SendingPaused => "AccountSendingPaused",
        SubmitError::DailyQuotaExceeded { .. } => "AccountDailyQuotaExceeded",
        SubmitError::MaxSendRateExceeded { .. } => "AccountThrottled",
        SubmitError::ConfigurationSetDoesNotExist(_) => "ConfigurationSetDoesNotExist",
        SubmitError::ConfigurationSetSendingPaused(_) => "ConfigurationSetSendingPaused",
        SubmitError::TemplateDoesNotExist(_) => "TemplateDoesNotExist",
        SubmitError::InvalidParameter(_)
        | SubmitError::InvalidTemplate(..)
        | SubmitError::MissingRenderingAttribute(_)
        | SubmitError::InvalidRenderingParameter(_) => "InvalidParameterValue",
        SubmitError::Storage(_) | SubmitError::Unavailable { .. } | SubmitError::Busy(_) => "TransientFailure",
    }
}
