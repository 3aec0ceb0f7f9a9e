//! The operator API (`/admin/v1/…`, JSON, `Authorization: Bearer <token>`), used by the
//! `weir account` and `weir identity` commands while the server runs.
//!
//! Handlers here return a finished error [`Response`] as their `Err`: this is a cold path, so the
//! size of that type does not matter.
#![allow(clippy::result_large_err)]

use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::{Value, json};
use weir_submit::AdminError;

use crate::error::ApiError;
use crate::{AppState, RawRequest};

mod accounts;
mod identities;
mod queue;
mod status;

pub(super) fn reply(status: StatusCode, v: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

/// An admin API error response.
pub fn fail(status: StatusCode, msg: impl Into<String>) -> Response {
    reply(status, json!({ "error": msg.into() }))
}

pub(super) fn admin_error(e: AdminError) -> Response {
    match e {
        AdminError::NotFound(m) => fail(StatusCode::NOT_FOUND, m),
        AdminError::Conflict(m) => fail(StatusCode::CONFLICT, m),
        AdminError::Invalid(m) | AdminError::LimitExceeded(m) => fail(StatusCode::BAD_REQUEST, m),
        AdminError::Storage(e) => fail(StatusCode::SERVICE_UNAVAILABLE, format!("storage unavailable: {e}")),
        AdminError::Unavailable(m) => fail(StatusCode::SERVICE_UNAVAILABLE, m),
    }
}

pub(super) fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(if body.is_empty() { b"{}" } else { body })
        .map_err(|e| fail(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

/// Check the bearer token (before the body is read).
pub fn authorize(st: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let token = values.next().and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    let single = values.next().is_none();
    if !single || !weir_sigv4::constant_time_eq(token.as_bytes(), st.cfg.admin_token.as_bytes()) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "missing or wrong admin token (see <data-dir>/admin-token)",
        ));
    }
    Ok(())
}

/// Handle one admin request whose token [`authorize`] accepted.
pub async fn handle(st: &AppState, raw: RawRequest) -> Response {
    match route(st, &raw).await {
        Ok(r) | Err(r) => r,
    }
}

async fn route(st: &AppState, raw: &RawRequest) -> Result<Response, Response> {
    let rest = raw.path.strip_prefix("/admin/v1/").unwrap_or("");
    let segs: Vec<String> = rest.split('/').map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned()).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (&raw.method, segs.as_slice()) {
        (&Method::POST, ["accounts"]) => accounts::create(st, raw).await,
        (&Method::GET, ["accounts"]) => accounts::list(st),
        (&Method::GET, ["accounts", name, "credentials"]) => accounts::credentials(st, name),
        (m, ["accounts", name, "regions", region, rest @ ..]) => {
            let a = accounts::in_region(st, name, region)?;
            match (m, rest) {
                (&Method::GET, []) => Ok(reply(StatusCode::OK, accounts::region_json(st, a.id, region).await)),
                (&Method::PUT, []) => accounts::set_region(st, &a, region, raw).await,
                (&Method::POST, ["identities"]) => identities::create(st, &a, region, raw).await,
                (&Method::GET, ["identities"]) => identities::list(st, &a, region),
                (&Method::POST, ["identities", ident, "dkim"]) => {
                    identities::start_dkim(st, &a, region, ident, raw).await
                }
                (&Method::POST, ["identities", ident, "dkim", "rotate"]) => {
                    identities::rotate_dkim(st, &a, region, ident).await
                }
                (&Method::GET, ["identities", ident, "dns"]) => identities::dns(st, &a, region, ident),
                _ => Err(no_operation(raw)),
            }
        }
        (&Method::GET, ["overview"]) => status::overview(st).await,
        (&Method::GET, ["delivery"]) => status::delivery(st),
        (&Method::GET, ["cluster"]) => status::cluster(st),
        (&Method::POST, ["cluster", "forget"]) => status::forget_node(st, raw).await,
        (&Method::GET, ["queue"]) => queue::list(st, raw),
        (&Method::GET, ["queue", "summary"]) => queue::summary(st),
        (&Method::GET, ["queue", id]) => queue::message(st, raw, id),
        (&Method::POST, ["queue", action]) => queue::act(st, raw, None, action).await,
        (&Method::POST, ["queue", id, action]) => queue::act(st, raw, Some(id), action).await,
        _ => Err(no_operation(raw)),
    }
}

fn no_operation(raw: &RawRequest) -> Response {
    fail(StatusCode::NOT_FOUND, format!("no admin operation at {} {}", raw.method, raw.path))
}
