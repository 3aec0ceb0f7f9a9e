//! SES v2: REST-JSON under `/v2/email/`.

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::error::{ApiError, Flavor};
use crate::v1::{decode_token, encode_token};
use crate::{AppState, RawRequest};

mod account;
mod configuration_sets;
mod contacts;
mod identities;
mod send;
mod suppression;
mod tags;
mod templates;

pub(crate) fn ok(body: Value, rid: &str) -> Response {
    let mut r = (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    if let Ok(v) = HeaderValue::from_str(rid) {
        r.headers_mut().insert("x-amzn-RequestId", v);
    }
    r
}

pub(crate) fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "BadRequestException", msg)
}

pub(crate) fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.is_empty() { b"{}".as_slice() } else { body };
    serde_json::from_slice(body).map_err(|e| bad(format!("Could not parse the request body as JSON: {e}")))
}

pub(crate) fn query_pairs(q: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

/// Handle one authenticated v2 request.
pub async fn handle(st: &AppState, caller: &Caller, raw: &RawRequest) -> Response {
    match route(st, caller, raw).await {
        Ok(r) => r,
        Err(e) => e.for_v2().render(Flavor::V2, &raw.request_id),
    }
}

pub(crate) fn label(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

async fn route(st: &AppState, caller: &Caller, raw: &RawRequest) -> Result<Response, ApiError> {
    let rest = raw.path.strip_prefix("/v2/email/").unwrap_or("");
    let segs: Vec<&str> = rest.split('/').collect();
    let m = &raw.method;
    let rid = raw.request_id.as_str();
    if let Some((_, rules)) = crate::validate::v2_rules(m.as_str(), &raw.path)
        && !rules.is_empty()
        && !raw.body.is_empty()
        && let Ok(body) = serde_json::from_slice::<Value>(&raw.body)
        && let Some(msg) = crate::validate::violations(rules, &body)
    {
        return Err(bad(msg));
    }
    match (m, segs.as_slice()) {
        (&Method::POST, ["outbound-emails"]) => send::send_email(st, caller, raw).await,
        (&Method::POST, ["outbound-bulk-emails"]) => send::send_bulk_email(st, caller, raw).await,
        (&Method::POST, ["templates"]) => templates::create(st, caller, raw).await,
        (&Method::GET, ["templates"]) => templates::list(st, caller, raw),
        (&Method::GET, ["templates", name]) => templates::get(st, caller, raw, &label(name)),
        (&Method::PUT, ["templates", name]) => templates::update(st, caller, raw, &label(name)).await,
        (&Method::DELETE, ["templates", name]) => templates::delete(st, caller, raw, &label(name)).await,
        (&Method::POST, ["templates", name, "render"]) => templates::render(st, caller, raw, &label(name)).await,
        (&Method::PUT, ["identities", id, "configuration-set"]) => {
            tags::put_identity_configuration_set(st, caller, raw, &label(id)).await
        }
        (&Method::POST, ["tags"]) => tags::tag_resource(st, caller, raw).await,
        (&Method::DELETE, ["tags"]) => tags::untag_resource(st, caller, raw).await,
        (&Method::GET, ["tags"]) => tags::list_tags_for_resource(st, caller, raw),
        (&Method::POST, ["contact-lists"]) => contacts::create_list(st, caller, raw).await,
        (&Method::GET, ["contact-lists"]) => contacts::list_lists(st, caller, raw),
        (&Method::GET, ["contact-lists", name]) => contacts::get_list(st, caller, raw, &label(name)),
        (&Method::PUT, ["contact-lists", name]) => contacts::update_list(st, caller, raw, &label(name)).await,
        (&Method::DELETE, ["contact-lists", name]) => contacts::delete_list(st, caller, raw, &label(name)).await,
        (&Method::POST, ["contact-lists", name, "contacts"]) => {
            contacts::create_contact(st, caller, raw, &label(name)).await
        }
        (&Method::POST, ["contact-lists", name, "contacts", "list"]) => {
            contacts::list_contacts(st, caller, raw, &label(name))
        }
        (&Method::GET, ["contact-lists", name, "contacts", email]) => {
            contacts::get_contact(st, caller, raw, &label(name), &label(email))
        }
        (&Method::PUT, ["contact-lists", name, "contacts", email]) => {
            contacts::update_contact(st, caller, raw, &label(name), &label(email)).await
        }
        (&Method::DELETE, ["contact-lists", name, "contacts", email]) => {
            contacts::delete_contact(st, caller, raw, &label(name), &label(email)).await
        }
        (&Method::POST, ["configuration-sets"]) => configuration_sets::create(st, caller, raw).await,
        (&Method::GET, ["configuration-sets"]) => configuration_sets::list(st, caller, raw),
        (&Method::GET, ["configuration-sets", name]) => configuration_sets::get(st, caller, raw, &label(name)),
        (&Method::DELETE, ["configuration-sets", name]) => {
            configuration_sets::delete(st, caller, raw, &label(name)).await
        }
        (&Method::PUT, ["configuration-sets", name, options]) => {
            configuration_sets::put_options(st, caller, raw, &label(name), options).await
        }
        (&Method::POST, ["configuration-sets", name, "event-destinations"]) => {
            configuration_sets::create_destination(st, caller, raw, &label(name)).await
        }
        (&Method::GET, ["configuration-sets", name, "event-destinations"]) => {
            configuration_sets::get_destinations(st, caller, raw, &label(name))
        }
        (&Method::PUT, ["configuration-sets", name, "event-destinations", dest]) => {
            configuration_sets::update_destination(st, caller, raw, &label(name), &label(dest)).await
        }
        (&Method::DELETE, ["configuration-sets", name, "event-destinations", dest]) => {
            configuration_sets::delete_destination(st, caller, raw, &label(name), &label(dest)).await
        }
        (&Method::GET, ["account"]) => Ok(ok(account::get_account(st, caller).await?, rid)),
        (&Method::PUT, ["account", "sending"]) => account::put_account_sending_attributes(st, caller, raw).await,
        (&Method::PUT, ["account", "suppression"]) => {
            account::put_account_suppression_attributes(st, caller, raw).await
        }
        (&Method::POST, ["identities"]) => identities::create_identity(st, caller, raw).await,
        (&Method::GET, ["identities"]) => identities::list_identities(st, caller, raw),
        (&Method::GET, ["identities", id]) => identities::get_email_identity(st, caller, raw, id).await,
        (&Method::PUT, ["identities", id, "mail-from"]) => {
            identities::put_email_identity_mail_from_attributes(st, caller, raw, id).await
        }
        (&Method::PUT, ["identities", id, "dkim"]) => {
            identities::put_email_identity_dkim_attributes(st, caller, raw, id).await
        }
        (&Method::PUT, ["identities", id, "dkim", "signing"]) => {
            identities::put_email_identity_dkim_signing_attributes(st, caller, raw, id).await
        }
        (&Method::DELETE, ["identities", id]) => identities::delete_email_identity(st, caller, raw, id).await,
        (&Method::PUT, ["suppression", "addresses"]) => suppression::put_suppressed_destination(st, caller, raw).await,
        (&Method::GET, ["suppression", "addresses"]) => suppression::list_suppressed(st, caller, raw),
        (&Method::GET, ["suppression", "addresses", addr]) => {
            suppression::get_suppressed_destination(st, caller, raw, addr).await
        }
        (&Method::DELETE, ["suppression", "addresses", addr]) => {
            suppression::delete_suppressed_destination(st, caller, raw, addr).await
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            format!("weir does not implement {} {}", raw.method, raw.path),
        )),
    }
}

/// One page of `all` (from `start`, at most `size`) under `key`, with a `NextToken` when more
/// follow: every v2 List operation answers this way.
pub(crate) fn page<T>(all: &[T], start: usize, size: usize, key: &str, item: impl Fn(&T) -> Value) -> Value {
    let items: Vec<Value> = all.iter().skip(start).take(size).map(item).collect();
    let mut out = json!({ key: items });
    if start + size < all.len() {
        out["NextToken"] = json!(encode_token(start + size));
    }
    out
}

pub(crate) fn page_size(q: &[(String, String)], max: usize) -> Result<usize, ApiError> {
    match q.iter().find(|(k, _)| k == "PageSize") {
        None => Ok(max),
        Some((_, v)) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| bad(format!("Invalid PageSize '{v}': must be between 1 and {max}."))),
    }
}

pub(crate) fn next_token(q: &[(String, String)]) -> Result<usize, ApiError> {
    decode_token(q.iter().find(|(k, _)| k == "NextToken").map(|(_, v)| v.as_str()))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "InvalidNextTokenException", e.message))
}
