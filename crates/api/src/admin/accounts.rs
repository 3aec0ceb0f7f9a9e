//! Accounts and their settings per region.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use weir_store::model::{Account, Enforcement, RegionSettings};

use super::{admin_error, fail, parse, reply};
use crate::auth::is_region;
use crate::{AppState, RawRequest};

/// `POST /accounts`: a new account with fresh credentials.
pub(super) async fn create(st: &AppState, raw: &RawRequest) -> Result<Response, Response> {
    #[derive(Deserialize)]
    struct In {
        name: String,
    }
    let i: In = parse(&raw.body)?;
    let a = st.svc.directory().create_account(&i.name).await.map_err(admin_error)?;
    Ok(reply(
        StatusCode::CREATED,
        json!({"name": a.name, "access_key_id": a.access_key_id, "secret_access_key": a.secret, "created_ms": a.created_ms}),
    ))
}

/// `GET /accounts`.
pub(super) fn list(st: &AppState) -> Result<Response, Response> {
    let list: Vec<Value> = st
        .svc
        .directory()
        .accounts()
        .iter()
        .map(|a| json!({"name": a.name, "access_key_id": a.access_key_id, "created_ms": a.created_ms}))
        .collect();
    Ok(reply(StatusCode::OK, json!(list)))
}

/// `GET /accounts/NAME/credentials`.
pub(super) fn credentials(st: &AppState, name: &str) -> Result<Response, Response> {
    let a = st.svc.directory().account_by_name(name).map_err(admin_error)?;
    Ok(reply(StatusCode::OK, json!({"name": a.name, "access_key_id": a.access_key_id, "secret_access_key": a.secret})))
}

/// The account of `/accounts/NAME/regions/REGION/…`, once the region is one this server answers
/// for.
pub(super) fn in_region(st: &AppState, name: &str, region: &str) -> Result<Arc<Account>, Response> {
    if !is_region(region) || !st.svc.directory().region_known(region) {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            format!("'{region}' is not a region this server answers for (see `regions` in weir.toml)"),
        ));
    }
    st.svc.directory().account_by_name(name).map_err(admin_error)
}

/// `PUT /accounts/NAME/regions/REGION`: change the settings the body names.
pub(super) async fn set_region(
    st: &AppState,
    a: &Account,
    region: &str,
    raw: &RawRequest,
) -> Result<Response, Response> {
    let patch: RegionPatch = parse(&raw.body)?;
    patch.validate().map_err(|m| fail(StatusCode::BAD_REQUEST, m))?;
    let now = st.svc.now_ms();
    st.svc.directory().update_region_settings(a.id, region, |s| patch.apply(s, now)).await.map_err(admin_error)?;
    Ok(reply(StatusCode::OK, region_json(st, a.id, region).await))
}

/// Settings and usage of one (account, region), as the CLI prints them.
pub(super) async fn region_json(st: &AppState, account_id: i64, region: &str) -> Value {
    let s = st.svc.directory().region_settings(account_id, region);
    // Every node's sends in a cluster; this node's own if Redis does not answer (said so).
    let (sent, shared) = match st.svc.quotas().send_quota(account_id, region).await {
        Ok(q) => (q.sent_last_24h, true),
        Err(_) => (st.svc.quotas().quota_view(account_id, region).sent_last_24h, false),
    };
    json!({
        "region": region,
        "max_24h": s.max_24h,
        "max_rate": s.max_rate,
        "burst_seconds": s.burst_seconds,
        "production": s.production,
        "sandbox": !s.production,
        "sending_enabled": s.sending_enabled,
        "suppressed_reasons": s.suppressed_reasons,
        "enforcement": s.enforcement,
        "sent_last_24h": sent,
        "sent_last_24h_complete": shared,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionPatch {
    max_24h: Option<i64>,
    max_rate: Option<f64>,
    burst_seconds: Option<f64>,
    production: Option<bool>,
    sending_enabled: Option<bool>,
    enforcement: Option<Enforcement>,
}

impl RegionPatch {
    fn validate(&self) -> Result<(), String> {
        if let Some(m) = self.max_24h
            && m < -1
        {
            return Err(format!("max_24h must be -1 (unlimited) or at least 0, not {m}"));
        }
        if let Some(r) = self.max_rate
            && !(r == -1.0 || (r.is_finite() && r > 0.0))
        {
            return Err(format!("max_rate must be -1 (unlimited) or a positive number, not {r}"));
        }
        if let Some(b) = self.burst_seconds
            && !(b.is_finite() && b >= 0.0)
        {
            return Err(format!("burst_seconds must be a non-negative number, not {b}"));
        }
        Ok(())
    }

    fn apply(self, s: &mut RegionSettings, now_ms: i64) {
        if let Some(v) = self.production {
            if v && !s.production {
                // Leaving the sandbox lifts the recipient rule; quotas stay what the operator sets.
                s.production = true;
            } else if !v {
                *s = RegionSettings {
                    sending_enabled: s.sending_enabled,
                    enforcement: s.enforcement,
                    enforcement_reset_ms: s.enforcement_reset_ms,
                    ..RegionSettings::sandbox()
                };
            }
        }
        if let Some(v) = self.max_24h {
            s.max_24h = v;
        }
        if let Some(v) = self.max_rate {
            s.max_rate = v;
        }
        if let Some(v) = self.burst_seconds {
            s.burst_seconds = v;
        }
        if let Some(v) = self.sending_enabled {
            s.sending_enabled = v;
        }
        if let Some(v) = self.enforcement {
            s.enforcement = v;
            s.enforcement_reset_ms = now_ms;
        }
    }
}
