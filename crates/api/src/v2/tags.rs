//! v2 TagResource, UntagResource, ListTagsForResource, and
//! PutEmailIdentityConfigurationSetAttributes.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use weir_submit::AdminError;

use super::{ok, parse, query_pairs};
use crate::auth::Caller;
use crate::error::{ApiError, Flavor};
use crate::{AppState, RawRequest};

/// A v2 `Tag`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct TagIn {
    pub(super) key: String,
    pub(super) value: String,
}

fn err(e: AdminError) -> ApiError {
    match e {
        AdminError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "NotFoundException", m),
        other => ApiError::from_admin(other, Flavor::V2),
    }
}

fn arn_param(raw: &RawRequest) -> Result<String, ApiError> {
    query_pairs(&raw.query)
        .into_iter()
        .find(|(k, _)| k == "ResourceArn")
        .map(|(_, v)| v)
        .ok_or_else(|| ApiError::missing(&["resourceArn"]).for_v2())
}

pub(super) async fn tag_resource(st: &AppState, caller: &Caller, raw: &RawRequest) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        resource_arn: Option<String>,
        tags: Option<Vec<TagIn>>,
    }
    let i: In = parse(&raw.body)?;
    let mut absent = vec![];
    if i.resource_arn.is_none() {
        absent.push("resourceArn");
    }
    if i.tags.is_none() {
        absent.push("tags");
    }
    if !absent.is_empty() {
        return Err(ApiError::missing(&absent).for_v2());
    }
    let tags = i.tags.unwrap_or_default().into_iter().map(|t| (t.key, t.value)).collect();
    st.svc
        .tag_resource(caller.account.id, &caller.region, &i.resource_arn.unwrap_or_default(), tags)
        .await
        .map_err(err)?;
    Ok(ok(json!({}), &raw.request_id))
}

pub(super) async fn untag_resource(st: &AppState, caller: &Caller, raw: &RawRequest) -> Result<Response, ApiError> {
    let arn = arn_param(raw)?;
    let keys: Vec<String> =
        query_pairs(&raw.query).into_iter().filter(|(k, _)| k == "TagKeys").map(|(_, v)| v).collect();
    if keys.is_empty() {
        return Err(ApiError::missing(&["tagKeys"]).for_v2());
    }
    st.svc.untag_resource(caller.account.id, &caller.region, &arn, &keys).await.map_err(err)?;
    Ok(ok(json!({}), &raw.request_id))
}

pub(super) fn list_tags_for_resource(st: &AppState, caller: &Caller, raw: &RawRequest) -> Result<Response, ApiError> {
    let arn = arn_param(raw)?;
    let tags = st.svc.resource_tags(caller.account.id, &caller.region, &arn).map_err(err)?;
    let tags: Vec<_> = tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect();
    Ok(ok(json!({ "Tags": tags }), &raw.request_id))
}

pub(super) async fn put_identity_configuration_set(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
    identity: &str,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        configuration_set_name: Option<String>,
    }
    let i: In = parse(&raw.body)?;
    if st.svc.directory().identity(caller.account.id, &caller.region, identity).is_none() {
        return Err(err(AdminError::NotFound(format!("Email identity {identity} does not exist."))));
    }
    let mut attrs = st.svc.identity_settings().identity_attributes(caller.account.id, &caller.region, identity);
    attrs.configuration_set = i.configuration_set_name.filter(|s| !s.is_empty());
    st.svc
        .identity_settings()
        .set_identity_attributes(caller.account.id, &caller.region, identity, attrs)
        .await
        .map_err(err)?;
    Ok(ok(json!({}), &raw.request_id))
}
