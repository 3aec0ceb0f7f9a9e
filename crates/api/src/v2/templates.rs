//! v2 email templates: Create/Get/List/Update/DeleteEmailTemplate and TestRenderEmailTemplate.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use weir_submit::AdminError;

use super::send::TemplateContent;
use super::{bad, next_token, ok, page, page_size, parse, query_pairs};
use crate::auth::Caller;
use crate::error::{ApiError, Flavor};
use crate::{AppState, RawRequest};

fn err(e: AdminError) -> ApiError {
    ApiError::from_admin(e, Flavor::V2)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Put {
    template_name: Option<String>,
    template_content: Option<TemplateContent>,
}

pub(super) async fn create(st: &AppState, caller: &Caller, raw: &RawRequest) -> Result<Response, ApiError> {
    let i: Put = parse(&raw.body)?;
    let mut absent = vec![];
    if i.template_name.is_none() {
        absent.push("templateName");
    }
    if i.template_content.is_none() {
        absent.push("templateContent");
    }
    if !absent.is_empty() {
        return Err(ApiError::missing(&absent));
    }
    let (name, content) = (i.template_name.unwrap_or_default(), i.template_content.unwrap_or_default());
    st.svc
        .resources()
        .put_template(caller.account.id, &caller.region, &name, content.into(), false)
        .await
        .map_err(err)?;
    Ok(ok(json!({}), &raw.request_id))
}

pub(super) async fn update(st: &AppState, caller: &Caller, raw: &RawRequest, name: &str) -> Result<Response, ApiError> {
    let i: Put = parse(&raw.body)?;
    let content = i.template_content.ok_or_else(|| ApiError::missing(&["templateContent"]))?;
    st.svc
        .resources()
        .put_template(caller.account.id, &caller.region, name, content.into(), true)
        .await
        .map_err(err)?;
    Ok(ok(json!({}), &raw.request_id))
}

pub(super) fn get(st: &AppState, caller: &Caller, raw: &RawRequest, name: &str) -> Result<Response, ApiError> {
    let t = st
        .svc
        .resources()
        .template(caller.account.id, &caller.region, name)
        .map_err(|e| ApiError::from_submit(e, Flavor::V2, ""))?;
    let mut content = serde_json::Map::new();
    for (k, v) in [("Subject", t.subject), ("Text", t.text), ("Html", t.html)] {
        if let Some(v) = v {
            content.insert(k.into(), Value::String(v));
        }
    }
    Ok(ok(json!({"TemplateName": name, "TemplateContent": content}), &raw.request_id))
}

pub(super) fn list(st: &AppState, caller: &Caller, raw: &RawRequest) -> Result<Response, ApiError> {
    let q = query_pairs(&raw.query);
    let size = page_size(&q, 100)?;
    let start = next_token(&q)?;
    let all = st.svc.resources().template_names(caller.account.id, &caller.region).map_err(err)?;
    let out = page(
        &all,
        start,
        size,
        "TemplatesMetadata",
        |(name, created_ms)| json!({"TemplateName": name, "CreatedTimestamp": *created_ms as f64 / 1000.0}),
    );
    Ok(ok(out, &raw.request_id))
}

pub(super) async fn delete(st: &AppState, caller: &Caller, raw: &RawRequest, name: &str) -> Result<Response, ApiError> {
    st.svc.resources().delete_template(caller.account.id, &caller.region, name).await.map_err(|e| match e {
        AdminError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "NotFoundException", m),
        other => err(other),
    })?;
    Ok(ok(json!({}), &raw.request_id))
}

pub(super) async fn render(st: &AppState, caller: &Caller, raw: &RawRequest, name: &str) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        template_data: Option<String>,
    }
    let i: In = parse(&raw.body)?;
    let data = i.template_data.ok_or_else(|| ApiError::missing(&["templateData"]))?;
    if data.is_empty() {
        return Err(bad("TemplateData must not be empty."));
    }
    let mime = st
        .svc
        .sending()
        .test_render(caller.account.id, &caller.region, name, &data)
        .await
        .map_err(|e| ApiError::from_submit(e, Flavor::V2, ""))?;
    Ok(ok(json!({ "RenderedTemplate": mime }), &raw.request_id))
}
