//! v1 templates: Create/Update/Get/List/Delete and TestRenderTemplate.

use axum::response::Response;
use weir_submit::template::TemplateParts;

use super::{Cx, decode_token, encode_token, required};
use crate::error::{ApiError, Flavor};
use crate::xml::{self, el};

fn err(e: weir_submit::AdminError) -> ApiError {
    ApiError::from_admin_v1(e, "TemplateDoesNotExist", "AlreadyExists")
}

pub(super) async fn create_template(cx: &Cx<'_>, update: bool) -> Result<Response, ApiError> {
    let p = cx.p;
    let name = required(p, "Template.TemplateName", "template.templateName")?;
    let parts = TemplateParts {
        subject: p.get("Template.SubjectPart").map(str::to_string),
        text: p.get("Template.TextPart").map(str::to_string),
        html: p.get("Template.HtmlPart").map(str::to_string),
    };
    cx.svc.resources().put_template(cx.acct, cx.region, name, parts, update).await.map_err(|e| match e {
        weir_submit::AdminError::Invalid(m) if m.starts_with("Template ") => {
            ApiError::new(axum::http::StatusCode::BAD_REQUEST, "InvalidTemplate", m)
        }
        other => err(other),
    })?;
    Ok(xml::ok(cx.action, Some(""), cx.rid))
}

pub(super) fn get_template(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let name = required(cx.p, "TemplateName", "templateName")?;
    let t =
        cx.svc.resources().template(cx.acct, cx.region, name).map_err(|e| ApiError::from_submit(e, Flavor::V1, ""))?;
    let part = |tag: &str, v: &Option<String>| v.as_deref().map(|v| el(tag, v)).unwrap_or_default();
    let inner = format!(
        "<Template>{}{}{}{}</Template>",
        el("TemplateName", name),
        part("SubjectPart", &t.subject),
        part("TextPart", &t.text),
        part("HtmlPart", &t.html)
    );
    Ok(xml::ok(cx.action, Some(&inner), cx.rid))
}

pub(super) fn list_templates(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let max = match cx.p.get("MaxItems") {
        None => 10,
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiError::invalid(format!("Invalid MaxItems '{m}': must be between 1 and 100.")))?,
    };
    let start = decode_token(cx.p.get("NextToken"))?;
    let all = cx.svc.resources().template_names(cx.acct, cx.region).map_err(err)?;
    let members: String = all
        .iter()
        .skip(start)
        .take(max)
        .map(|(name, created_ms)| {
            format!("<member>{}{}</member>", el("Name", name), el("CreatedTimestamp", &super::iso(*created_ms)))
        })
        .collect();
    let mut inner = if members.is_empty() {
        "<TemplatesMetadata/>".to_string()
    } else {
        format!("<TemplatesMetadata>{members}</TemplatesMetadata>")
    };
    if start + max < all.len() {
        inner.push_str(&el("NextToken", &encode_token(start + max)));
    }
    Ok(xml::ok(cx.action, Some(&inner), cx.rid))
}

pub(super) async fn delete_template(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let name = required(cx.p, "TemplateName", "templateName")?;
    // SES answers success whether or not the template existed.
    match cx.svc.resources().delete_template(cx.acct, cx.region, name).await {
        Ok(()) | Err(weir_submit::AdminError::NotFound(_)) => {}
        Err(e) => return Err(err(e)),
    }
    Ok(xml::ok(cx.action, Some(""), cx.rid))
}

pub(super) async fn test_render_template(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let p = cx.p;
    let name = required(p, "TemplateName", "templateName")?;
    let data = required(p, "TemplateData", "templateData")?;
    let mime = cx
        .svc
        .sending()
        .test_render(cx.acct, cx.region, name, data)
        .await
        .map_err(|e| ApiError::from_submit(e, Flavor::V1, ""))?;
    Ok(xml::ok(cx.action, Some(&el("RenderedTemplate", &mime)), cx.rid))
}
