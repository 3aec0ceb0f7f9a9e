//! The HTTP front door.
//!
//! # Layout
//! - [`server`]: the listener (HTTP/1.1 with deadlines, connection caps, bounded shutdown).
//! - [`dispatch`]: reads the raw request (SigV4 needs the exact bytes) and routes it:
//!   `POST /` with an `Action` → [`v1`] (Query/XML), `/v2/email/…` → [`v2`] (REST/JSON),
//!   `/admin/v1/…` → [`admin`] (operator JSON API, bearer token). Credentials in the headers are
//!   checked before the body is read ([`body`]).
//! - [`auth`]: SigV4 verification and its per-version error codes.
//! - [`error`]: [`error::ApiError`] and its rendering as SES v1 XML or v2 JSON.
//! - [`query`]: the AWS Query parameter decoder (`X.member.N`, dotted structures).
//! - [`xml`]: the handful of XML shapes SES v1 answers with.

pub mod admin;
pub mod auth;
pub mod body;
#[rustfmt::skip]
pub mod constraints;
pub mod error;
pub mod query;
pub mod server;
pub mod v1;
pub mod v2;
pub mod validate;
pub mod xml;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
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
    /// Time allowed for a whole request body.
    pub body_timeout: std::time::Duration,
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
    /// Body bytes all requests may hold at once.
    pub body_budget: body::BodyBudget,
    /// Request counters and latency.
    pub metrics: Arc<weir_metrics::Metrics>,
    /// `GET /metrics`: the Prometheus text, with the scrape-time gauges read.
    pub metrics_text: Option<Arc<dyn Fn() -> String + Send + Sync>>,
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

fn flavor_of(method: &Method, path: &str) -> Option<Flavor> {
    if path.starts_with("/v2/") {
        Some(Flavor::V2)
    } else if path == "/" && method == Method::POST {
        Some(Flavor::V1)
    } else {
        None
    }
}

/// Who answers a request.
#[derive(Clone, Copy)]
enum Target {
    Admin,
    Ses(Flavor),
}

/// Headers of every page weir serves to browsers: no framing by other sites (clickjacking the
/// unsubscribe button, the dashboard), no scripts but weir's own files, no guessing of types.
fn page_headers(csp: &'static str) -> [(header::HeaderName, &'static str); 5] {
    [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CONTENT_SECURITY_POLICY, csp),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ]
}

/// The pages of links in mail (verification, unsubscribe): no script at all; a form to itself.
const LINK_PAGE_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A small page with `title` and `body` (HTML, escaped by the caller).
fn link_page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head><body>{body}</body></html>\n"
    );
    (status, page_headers(LINK_PAGE_CSP), html).into_response()
}

/// A verification link followed: the address becomes verified when the link is genuine.
async fn verify_link(st: &AppState, query: &str) -> Response {
    let q: std::collections::HashMap<String, String> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let page = |status: StatusCode, text: &str| {
        link_page(status, "weir", &format!("<p>{}</p>", text.replace('&', "&amp;").replace('<', "&lt;")))
    };
    let (Some(a), Some(r), Some(i), Some(t)) =
        (q.get("a").and_then(|a| a.parse::<i64>().ok()), q.get("r"), q.get("i"), q.get("t"))
    else {
        return page(StatusCode::BAD_REQUEST, "This verification link is incomplete.");
    };
    match st.svc.verification().confirm_verification(a, r, i, t).await {
        Ok(true) => page(StatusCode::OK, &format!("Congratulations! {i} is now verified for sending in {r}.")),
        Ok(false) => page(StatusCode::FORBIDDEN, "This verification link is not valid."),
        Err(e) => {
            tracing::error!(error = %e, "verification not recorded");
            page(StatusCode::SERVICE_UNAVAILABLE, "Try the link again in a moment.")
        }
    }
}

/// An unsubscribe link: GET shows a confirmation page (link scanners must not unsubscribe
/// anyone), POST unsubscribes: from a mail client's one-click button (RFC 8058, body
/// `List-Unsubscribe=One-Click`) or from the page's form.
async fn unsubscribe_link(st: &AppState, method: &axum::http::Method, token: &str, body: &[u8]) -> Response {
    let page = |status: StatusCode, inner: String| link_page(status, "Unsubscribe", &inner);
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('"', "&quot;");
    if method == axum::http::Method::GET {
        return page(
            StatusCode::OK,
            format!(
                "<form method=\"post\" action=\"/unsubscribe/{}\"><input type=\"hidden\" name=\"source\" value=\"link\">\
                 <p>Stop receiving these messages?</p><button type=\"submit\">Unsubscribe</button></form>",
                esc(token)
            ),
        );
    }
    if method != axum::http::Method::POST {
        return page(StatusCode::METHOD_NOT_ALLOWED, "<p>Use GET or POST.</p>".into());
    }
    let form: std::collections::HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    let source = if form.get("List-Unsubscribe").map(String::as_str) == Some("One-Click") {
        "UnsubscribeHeader"
    } else {
        "UnsubscribeLink"
    };
    match st.svc.contacts().unsubscribe(token, source).await {
        Ok(Some((email, _))) => page(StatusCode::OK, format!("<p>{} is unsubscribed.</p>", esc(&email))),
        Ok(None) => page(StatusCode::NOT_FOUND, "<p>This unsubscribe link is not valid.</p>".into()),
        Err(e) => {
            tracing::error!(error = %e, "unsubscribe not recorded");
            page(StatusCode::SERVICE_UNAVAILABLE, "<p>Try again in a moment.</p>".into())
        }
    }
}

/// The address a request came from (set by the server on every request).
#[derive(Debug, Clone, Copy)]
pub struct PeerIp(pub std::net::IpAddr);

/// Answer one request, counted and timed.
pub async fn dispatch(st: AppState, req: Request<Body>) -> Response {
    let started = std::time::Instant::now();
    let api = if req.uri().path().starts_with("/admin/") || req.uri().path() == "/metrics" {
        "admin"
    } else if req.uri().path().starts_with("/v2/") {
        "v2"
    } else {
        "v1"
    };
    let metrics = st.metrics.clone();
    let resp = answer(st, req).await;
    let code = resp.extensions().get::<error::ErrorCode>().map_or("", |c| c.0.as_str());
    metrics.request(api, resp.status().as_u16(), code, started.elapsed().as_secs_f64());
    resp
}

async fn answer(st: AppState, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    if let Some(page) = fixed_page(&st, &parts.headers, &path) {
        return page;
    }
    if path == "/verify" {
        return verify_link(&st, &query).await;
    }
    if let Some(token) = path.strip_prefix("/unsubscribe/") {
        // A small form body at most: read it under the same limits as any request.
        let read = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, 4096));
        let bytes = match tokio::time::timeout(std::time::Duration::from_secs(10), read).await {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(_)) => return (StatusCode::PAYLOAD_TOO_LARGE, "body too large\n").into_response(),
            Err(_) => return (StatusCode::REQUEST_TIMEOUT, "body not received in time\n").into_response(),
        };
        return unsubscribe_link(&st, &parts.method, token, &bytes).await;
    }
    operation(st, parts, path, query, body).await
}

/// The pages that are no operation: health, the dashboard and its script, the metrics.
fn fixed_page(st: &AppState, headers: &HeaderMap, path: &str) -> Option<Response> {
    Some(match path {
        "/health" => (StatusCode::OK, "ok\n").into_response(),
        // The page holds no data: its script asks the admin API, with the token the operator
        // gives it (kept in the tab's session storage, or in the URL fragment, never sent).
        "/dashboard" => (
            StatusCode::OK,
            page_headers(
                "default-src 'self'; script-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'; \
                 base-uri 'none'; form-action 'self'",
            ),
            include_str!("dashboard.html"),
        )
            .into_response(),
        "/dashboard.js" => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::X_CONTENT_TYPE_OPTIONS, "nosniff")],
            include_str!("dashboard.js"),
        )
            .into_response(),
        "/metrics" => {
            // Scraped with the admin token (Prometheus: `authorization: {credentials: …}`).
            if let Err(e) = admin::authorize(st, headers) {
                return Some(admin::fail(e.status, e.message));
            }
            let text = st.metrics_text.as_ref().map(|f| f()).unwrap_or_default();
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                text,
            )
                .into_response()
        }
        _ => return None,
    })
}

/// An SES or admin operation: who asks is checked on the headers, then the body is read under
/// its limits, then the request is authenticated and handled.
async fn operation(
    st: AppState,
    parts: axum::http::request::Parts,
    path: String,
    query: String,
    body: Body,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let target = if path.starts_with("/admin/") {
        Target::Admin
    } else if let Some(flavor) = flavor_of(&parts.method, &path) {
        Target::Ses(flavor)
    } else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            format!("weir has no operation at {} {}", parts.method, path),
        )
        .render(Flavor::V2, &request_id);
    };
    let refuse = |e: ApiError| match target {
        Target::Admin => admin::fail(e.status, e.message),
        Target::Ses(flavor) => e.render(flavor, &request_id),
    };
    let content_length = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if content_length.is_some_and(|n| n > st.cfg.max_body_bytes as u64) {
        return refuse(body_error(body::BodyError::TooLarge(st.cfg.max_body_bytes)));
    }
    // Whoever is not who they claim is refused on the headers alone, before a body is read.
    let early = match target {
        Target::Admin => admin::authorize(&st, &parts.headers).map(|()| None),
        Target::Ses(flavor) => auth::precheck(&st, &parts.headers, &query, flavor).map(Some),
    };
    let key = match early {
        Ok(k) => k,
        Err(e) => return refuse(e),
    };
    let ip = parts.extensions.get::<PeerIp>().map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |p| p.0);
    // The body counts against its address, and against the key it claims unless that key has
    // signed correctly from this address before; each is held to a share of the budget.
    let holders = st.body_budget.holders(ip, key.as_deref());
    let limits = (st.cfg.max_body_bytes, st.cfg.body_timeout);
    let read = match body::read(body, content_length, limits.0, limits.1, &st.body_budget, &holders).await {
        Ok(b) => b,
        Err(e) => return refuse(body_error(e)),
    };
    let raw =
        RawRequest { method: parts.method, path, query, headers: parts.headers, body: read.bytes.clone(), request_id };
    let flavor = match target {
        Target::Admin => return admin::handle(&st, raw).await,
        Target::Ses(flavor) => flavor,
    };
    let caller = match auth::authenticate(&st, &raw, flavor) {
        Ok(c) => c,
        Err(e) => return e.render(flavor, &raw.request_id),
    };
    st.body_budget.prove(&caller.account.access_key_id, ip);
    let resp = match flavor {
        Flavor::V1 => v1::handle(&st, &caller, &raw).await,
        Flavor::V2 => v2::handle(&st, &caller, &raw).await,
    };
    // The body's share of the in-flight budget is held until the request is answered.
    drop(read);
    resp
}

fn body_error(e: body::BodyError) -> ApiError {
    let status = match e {
        body::BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        body::BodyError::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
        body::BodyError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        body::BodyError::Broken(_) => StatusCode::BAD_REQUEST,
    };
    let code = match e {
        body::BodyError::TooLarge(_) => "RequestEntityTooLarge",
        body::BodyError::TimedOut(_) => "RequestTimeout",
        body::BodyError::Busy => "ServiceUnavailable",
        body::BodyError::Broken(_) => "IncompleteBody",
    };
    ApiError::new(status, code, e.to_string())
}
