//! The HTTP front door.
//!
//! # Layout
//! - [`router`]: one axum handler that reads the raw request (SigV4 needs the exact bytes) and
//!   routes it: `POST /` with an `Action` → [`v1`] (Query/XML), `/v2/email/…` → [`v2`]
//!   (REST/JSON), `/admin/v1/…` → [`admin`] (operator JSON API, bearer token).
//! - [`auth`]: SigV4 verification and its per-version error codes.
//! - [`error`]: [`error::ApiError`] and its rendering as SES v1 XML or v2 JSON.
//! - [`query`]: the AWS Query parameter decoder (`X.member.N`, dotted structures).
//! - [`xml`]: the handful of XML shapes SES v1 answers with.

pub mod admin;
pub mod auth;
pub mod error;
pub mod query;
pub mod send;
pub mod v1;
pub mod v2;
pub mod xml;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use weir_submit::Service;

use crate::error::{ApiError, Flavor};

/// Settings of the HTTP front door.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Allowed SigV4 clock skew in seconds.
    pub max_skew_secs: u64,
    /// Largest request body read, in bytes.
    pub max_body_bytes: usize,
    /// Bearer token of the admin API.
    pub admin_token: String,
    /// v2 error code for the daily quota (`LimitExceededException` by default).
    pub v2_daily_quota_code: String,
}

/// A source of live status for the admin API (the delivery engine's lanes, for one).
pub type StatusFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Shared state of every request.
#[derive(Clone)]
pub struct AppState {
    /// The submission service.
    pub svc: Arc<Service>,
    /// Front-door settings.
    pub cfg: Arc<ApiConfig>,
    /// Delivery status, when the delivery engine runs.
    pub delivery_status: Option<StatusFn>,
}

/// A request as received, with the body read.
pub struct RawRequest {
    /// Method.
    pub method: Method,
    /// Path as sent (percent-encoded).
    pub path: String,
    /// Query string as sent.
    pub query: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Bytes,
    /// `x-amzn-RequestId` of this request.
    pub request_id: String,
}

/// The axum router of the whole HTTP front door.
pub fn router(state: AppState) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

fn flavor_of(method: &Method, path: &str) -> Option<Flavor> {
    if path.starts_with("/v2/") {
        Some(Flavor::V2)
    } else if path == "/" && method == Method::POST {
        Some(Flavor::V1)
    } else {
        None
    }
}

async fn dispatch(State(st): State<AppState>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let request_id = uuid::Uuid::new_v4().to_string();
    if path == "/health" {
        return (StatusCode::OK, "ok\n").into_response();
    }
    let flavor = flavor_of(&parts.method, &path);
    let body = match axum::body::to_bytes(body, st.cfg.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            let e = ApiError::invalid(format!(
                "Request body is larger than {} bytes or could not be read.",
                st.cfg.max_body_bytes
            ));
            return e.render(flavor.unwrap_or(Flavor::V2), &request_id);
        }
    };
    let raw = RawRequest { method: parts.method, path, query, headers: parts.headers, body, request_id };
    if raw.path.starts_with("/admin/") {
        return admin::handle(&st, raw).await;
    }
    let Some(flavor) = flavor else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            format!("weir has no operation at {} {}", raw.method, raw.path),
        )
        .render(Flavor::V2, &raw.request_id);
    };
    let caller = match auth::authenticate(&st, &raw, flavor) {
        Ok(c) => c,
        Err(e) => return e.render(flavor, &raw.request_id),
    };
    match flavor {
        Flavor::V1 => v1::handle(&st, &caller, &raw).await,
        Flavor::V2 => v2::handle(&st, &caller, &raw).await,
    }
}
