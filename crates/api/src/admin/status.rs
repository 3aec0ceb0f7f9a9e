//! What the server is doing: the accounts' overview, the delivery engine, the cluster.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::accounts::region_json;
use super::{admin_error, fail, parse, reply};
use crate::{AppState, RawRequest};

/// `GET /overview`: every account and region in use, with settings, quota use, and the last 14
/// days' rates.
pub(super) async fn overview(st: &AppState) -> Result<Response, Response> {
    let svc = &st.svc;
    let mut out = Vec::new();
    for a in svc.directory().accounts() {
        for region in svc.directory().regions_of(a.id) {
            let mut v = region_json(st, a.id, &region).await;
            let pts = svc.quotas().send_statistics(a.id, &region).await.unwrap_or_default();
            let (sent, bounces, complaints) =
                pts.iter().fold((0, 0, 0), |t, p| (t.0 + p.delivery_attempts, t.1 + p.bounces, t.2 + p.complaints));
            let rate = |n: i64| if sent > 0 { n as f64 / sent as f64 } else { 0.0 };
            v["account"] = json!(a.name);
            v["region"] = json!(region);
            v["sent_14d"] = json!(sent);
            v["bounce_rate"] = json!(rate(bounces));
            v["complaint_rate"] = json!(rate(complaints));
            // The last 24 hours in 15-minute buckets, for the dashboard's charts.
            let since = svc.now_ms() / 1000 - 86_400;
            v["series"] = json!(
                pts.iter()
                    .filter(|p| p.bucket >= since)
                    .map(|p| json!([p.bucket * 1000, p.delivery_attempts, p.bounces, p.complaints, p.rejects]))
                    .collect::<Vec<_>>()
            );
            out.push(v);
        }
    }
    Ok(reply(StatusCode::OK, json!(out)))
}

/// `GET /delivery`: the delivery engine's lanes and counters.
pub(super) fn delivery(st: &AppState) -> Result<Response, Response> {
    match &st.delivery_status {
        Some(f) => Ok(reply(StatusCode::OK, f())),
        None => Err(fail(StatusCode::NOT_FOUND, "the delivery engine is not running (delivery.enabled = false)")),
    }
}

/// `GET /cluster`: what this node knows of the cluster.
pub(super) fn cluster(st: &AppState) -> Result<Response, Response> {
    match st.svc.cluster_status() {
        Some(s) => Ok(reply(StatusCode::OK, json!(s))),
        None => Err(fail(StatusCode::NOT_FOUND, "this node is not in a cluster ([cluster] redis is not set)")),
    }
}

/// `POST /cluster/forget`: a node left the cluster for good.
pub(super) async fn forget_node(st: &AppState, raw: &RawRequest) -> Result<Response, Response> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Forget {
        node: String,
    }
    let f: Forget = parse(&raw.body)?;
    st.svc.forget_node(&f.node).await.map_err(admin_error)?;
    Ok(reply(StatusCode::OK, json!(st.svc.cluster_status())))
}
