//! The account-level suppression list: put, get, list, delete.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use weir_mail::address::validate_addr;

use super::*;
use weir_store::model::SuppressionReason;

use crate::auth::Caller;
use crate::error::{ApiError, Flavor};
use crate::{AppState, RawRequest};

/// A suppression reason as SES spells it (`BOUNCE`, `COMPLAINT`).
pub(super) fn reason_of(r: &str) -> Result<SuppressionReason, ApiError> {
    SuppressionReason::parse(r)
        .ok_or_else(|| bad(format!("Invalid suppression reason '{r}': must be BOUNCE or COMPLAINT.")))
}

pub(super) async fn put_suppressed_destination(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
) -> Result<Response, ApiError> {
    let rid = raw.request_id.as_str();
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        email_address: Option<String>,
        reason: Option<String>,
    }
    let i: In = parse(&raw.body)?;
    let mut missing = vec![];
    if i.email_address.is_none() {
        missing.push("emailAddress");
    }
    if i.reason.is_none() {
        missing.push("reason");
    }
    if !missing.is_empty() {
        return Err(ApiError::missing(&missing));
    }
    let (addr, reason) = (i.email_address.unwrap_or_default(), i.reason.unwrap_or_default());
    validate_addr(&addr).map_err(|e| bad(format!("Invalid email address {addr}: {}", e.0)))?;
    let reason = reason_of(&reason)?;
    st.svc
        .directory()
        .put_suppressed(caller.account.id, &caller.region, &addr, reason, None)
        .await
        .map_err(|e| ApiError::from_admin(e, Flavor::V2))?;
    Ok(ok(json!({}), rid))
}

pub(super) async fn get_suppressed_destination(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
    addr: &str,
) -> Result<Response, ApiError> {
    let rid = raw.request_id.as_str();
    let addr = label(addr);
    let s = st.svc.directory().suppressed(caller.account.id, &caller.region, &addr).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFoundException",
            format!("Email address {addr} does not exist on your suppression list."),
        )
    })?;
    let mut attrs = json!({});
    if let Some(m) = &s.message_id {
        attrs["MessageId"] = json!(m);
    }
    Ok(ok(
        json!({"SuppressedDestination": {
            "EmailAddress": s.address, "Reason": s.reason,
            "LastUpdateTime": s.updated_ms as f64 / 1000.0, "Attributes": attrs}}),
        rid,
    ))
}

pub(super) async fn delete_suppressed_destination(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
    addr: &str,
) -> Result<Response, ApiError> {
    let rid = raw.request_id.as_str();
    let addr = label(addr);
    st.svc
        .directory()
        .delete_suppressed(caller.account.id, &caller.region, &addr)
        .await
        .map_err(|e| ApiError::from_admin(e, Flavor::V2))?;
    Ok(ok(json!({}), rid))
}

fn parse_time(v: &str) -> Result<i64, ApiError> {
    if let Ok(secs) = v.parse::<f64>() {
        return Ok((secs * 1000.0) as i64);
    }
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|d| d.timestamp_millis())
        .map_err(|_| bad(format!("Invalid timestamp '{v}': use ISO-8601 (2024-01-01T00:00:00Z) or epoch seconds.")))
}

pub(super) fn list_suppressed(st: &AppState, caller: &Caller, raw: &RawRequest) -> Result<Response, ApiError> {
    let q = query_pairs(&raw.query);
    let reasons: Vec<SuppressionReason> =
        q.iter().filter(|(k, _)| k == "Reason").map(|(_, v)| reason_of(v)).collect::<Result<_, _>>()?;
    let start_ms = q.iter().find(|(k, _)| k == "StartDate").map(|(_, v)| parse_time(v)).transpose()?;
    let end_ms = q.iter().find(|(k, _)| k == "EndDate").map(|(_, v)| parse_time(v)).transpose()?;
    let size = page_size(&q, 1000)?;
    let start = next_token(&q)?;
    let all: Vec<_> = st
        .svc
        .directory()
        .suppression_list(caller.account.id, &caller.region)
        .into_iter()
        .filter(|s| reasons.is_empty() || reasons.contains(&s.reason))
        .filter(|s| start_ms.is_none_or(|t| s.updated_ms >= t) && end_ms.is_none_or(|t| s.updated_ms <= t))
        .collect();
    let out = page(
        &all,
        start,
        size,
        "SuppressedDestinationSummaries",
        |s| json!({"EmailAddress": s.address, "Reason": s.reason, "LastUpdateTime": s.updated_ms as f64 / 1000.0}),
    );
    Ok(ok(out, &raw.request_id))
}
