//! The account: its quotas and enforcement, sending and suppression attributes.

use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::*;
use crate::auth::Caller;
use crate::error::{ApiError, Flavor};
use crate::{AppState, RawRequest};

pub(super) async fn get_account(st: &AppState, caller: &Caller) -> Result<Value, ApiError> {
    let s = st.svc.directory().region_settings(caller.account.id, &caller.region);
    let q = st
        .svc
        .quotas()
        .send_quota(caller.account.id, &caller.region)
        .await
        .map_err(|e| ApiError::from_submit(e, Flavor::V2, ""))?;
    Ok(json!({
        "DedicatedIpAutoWarmupEnabled": false,
        "EnforcementStatus": s.enforcement,
        "ProductionAccessEnabled": s.production,
        "SendQuota": {"Max24HourSend": q.max_24h, "MaxSendRate": q.max_rate, "SentLast24Hours": q.sent_last_24h},
        "SendingEnabled": s.may_send(),
        "SuppressionAttributes": {"SuppressedReasons": s.suppressed_reasons},
    }))
}

pub(super) async fn put_account_sending_attributes(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
) -> Result<Response, ApiError> {
    let rid = raw.request_id.as_str();
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        sending_enabled: Option<bool>,
    }
    let i: In = parse(&raw.body)?;
    let enabled = i.sending_enabled.unwrap_or(false);
    st.svc
        .directory()
        .update_region_settings(caller.account.id, &caller.region, |s| s.sending_enabled = enabled)
        .await
        .map_err(|e| ApiError::from_admin(e, Flavor::V2))?;
    Ok(ok(json!({}), rid))
}

pub(super) async fn put_account_suppression_attributes(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
) -> Result<Response, ApiError> {
    let rid = raw.request_id.as_str();
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        suppressed_reasons: Option<Vec<String>>,
    }
    let i: In = parse(&raw.body)?;
    let reasons = i.suppressed_reasons.ok_or_else(|| ApiError::missing(&["suppressedReasons"]))?;
    let reasons: Vec<_> = reasons.iter().map(|r| super::suppression::reason_of(r)).collect::<Result<_, _>>()?;
    st.svc
        .directory()
        .update_region_settings(caller.account.id, &caller.region, |s| s.suppressed_reasons = reasons)
        .await
        .map_err(|e| ApiError::from_admin(e, Flavor::V2))?;
    Ok(ok(json!({}), rid))
}
