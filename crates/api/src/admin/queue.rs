//! The operator's queue: list, summary, one message, and retry, hold, release or delete.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;
use weir_store::model::RecipientState;
use weir_store::spool::{QueueAction, QueueFilter};

use super::{admin_error, fail, reply};
use crate::{AppState, RawRequest};

/// `GET /queue`: recipients matching the query's filter.
pub(super) fn list(st: &AppState, raw: &RawRequest) -> Result<Response, Response> {
    let (f, limit) = queue_filter(&raw.query, None)?;
    let rows = st.svc.queue_rows(&f, limit).map_err(admin_error)?;
    Ok(reply(StatusCode::OK, json!(rows)))
}

/// `GET /queue/summary`: what waits, by state and lane.
pub(super) fn summary(st: &AppState) -> Result<Response, Response> {
    let rows = st.svc.queue_summary().map_err(admin_error)?;
    Ok(reply(StatusCode::OK, json!(rows)))
}

/// `GET /queue/ID`: one message's recipients.
pub(super) fn message(st: &AppState, raw: &RawRequest, id: &str) -> Result<Response, Response> {
    let (f, _) = queue_filter(&raw.query, Some(id))?;
    let rows = st.svc.queue_rows(&f, usize::MAX).map_err(admin_error)?;
    if rows.is_empty() {
        return Err(fail(StatusCode::NOT_FOUND, format!("no message {id} in the spool")));
    }
    Ok(reply(StatusCode::OK, json!(rows)))
}

/// `POST /queue/ACTION` or `POST /queue/ID/ACTION`: retry, hold, release or delete what the
/// filter (or the message id) selects.
pub(super) async fn act(st: &AppState, raw: &RawRequest, id: Option<&str>, action: &str) -> Result<Response, Response> {
    let (f, _) = queue_filter(&raw.query, id)?;
    if id.is_none() && f.is_unfiltered() {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "a queue command needs a message id or at least one filter (state, account, recipient, lane, older_than_seconds)",
        ));
    }
    let svc = &st.svc;
    let n = match action {
        "retry" => svc.queue_action(QueueAction::Retry, f).await,
        "hold" => svc.queue_action(QueueAction::Hold, f).await,
        "release" => svc.queue_action(QueueAction::Release, f).await,
        "delete" => svc.queue_delete(f).await,
        other => {
            return Err(fail(
                StatusCode::NOT_FOUND,
                format!("unknown queue command '{other}': use retry, hold, release or delete"),
            ));
        }
    }
    .map_err(admin_error)?;
    Ok(reply(StatusCode::OK, json!({ "recipients": n })))
}

/// A queue filter from the query string (`state`, `account`, `recipient`, `lane`,
/// `older_than_seconds`, `limit`), for one message when `id` is given.
fn queue_filter(query: &str, id: Option<&str>) -> Result<(QueueFilter, usize), Response> {
    let mut f = QueueFilter { message_id: id.map(str::to_string), ..Default::default() };
    let mut limit = 1000usize;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let v = v.into_owned();
        match k.as_ref() {
            "state" => {
                let Some(state) = RecipientState::parse(&v) else {
                    let all: Vec<&str> = RecipientState::ALL.iter().map(|s| s.as_str()).collect();
                    return Err(fail(
                        StatusCode::BAD_REQUEST,
                        format!("unknown state '{v}': one of {}", all.join(", ")),
                    ));
                };
                f.state = Some(state);
            }
            "account" => f.account = Some(v),
            "recipient" => f.recipient = Some(v),
            "lane" => f.lane = Some(v),
            "older_than_seconds" => {
                let s: i64 = v.parse().map_err(|_| {
                    fail(StatusCode::BAD_REQUEST, format!("older_than_seconds must be a whole number, not '{v}'"))
                })?;
                f.older_than_ms = Some(s.saturating_mul(1000));
            }
            "limit" => {
                limit = v
                    .parse()
                    .map_err(|_| fail(StatusCode::BAD_REQUEST, format!("limit must be a whole number, not '{v}'")))?;
            }
            other => {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown queue filter '{other}': use state, account, recipient, lane, older_than_seconds or limit"
                    ),
                ));
            }
        }
    }
    Ok((f, limit))
}
