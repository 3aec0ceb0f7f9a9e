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
use weir_store::model::RecipientState;
use weir_store::model::{Enforcement, IdentityKind, RegionSettings};
use weir_store::spool::{QueueAction, QueueFilter};
use weir_submit::AdminError;

use crate::auth::is_region;
use crate::error::ApiError;
use crate::{AppState, RawRequest};

fn reply(status: StatusCode, v: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

/// An admin API error response.
pub fn fail(status: StatusCode, msg: impl Into<String>) -> Response {
    reply(status, json!({ "error": msg.into() }))
}

fn admin_error(e: AdminError) -> Response {
    match e {
        AdminError::NotFound(m) => fail(StatusCode::NOT_FOUND, m),
        AdminError::Conflict(m) => fail(StatusCode::CONFLICT, m),
        AdminError::Invalid(m) | AdminError::LimitExceeded(m) => fail(StatusCode::BAD_REQUEST, m),
        AdminError::Storage(e) => fail(StatusCode::SERVICE_UNAVAILABLE, format!("storage unavailable: {e}")),
        AdminError::Unavailable(m) => fail(StatusCode::SERVICE_UNAVAILABLE, m),
    }
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(if body.is_empty() { b"{}" } else { body })
        .map_err(|e| fail(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

/// Settings and usage of one (account, region), as the CLI prints them.
async fn region_json(st: &AppState, account_id: i64, region: &str) -> Value {
    let s = st.svc.region_settings(account_id, region);
    // Every node's sends in a cluster; this node's own if Redis does not answer (said so).
    let (sent, shared) = match st.svc.send_quota(account_id, region).await {
        Ok(q) => (q.sent_last_24h, true),
        Err(_) => (st.svc.quota_view(account_id, region).sent_last_24h, false),
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

/// Check the bearer token (before the body is read).
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
    let svc = &st.svc;
    match (&raw.method, segs.as_slice()) {
        (&Method::POST, ["accounts"]) => {
            #[derive(Deserialize)]
            struct In {
                name: String,
            }
            let i: In = parse(&raw.body)?;
            let a = svc.create_account(&i.name).await.map_err(admin_error)?;
            Ok(reply(
                StatusCode::CREATED,
                json!({"name": a.name, "access_key_id": a.access_key_id, "secret_access_key": a.secret, "created_ms": a.created_ms}),
            ))
        }
        (&Method::POST, ["cluster", "forget"]) => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Forget {
                node: String,
            }
            let f: Forget = parse(&raw.body)?;
            svc.forget_node(&f.node).await.map_err(admin_error)?;
            Ok(reply(StatusCode::OK, json!(svc.cluster_status())))
        }
        (&Method::GET, ["cluster"]) => match svc.cluster_status() {
            Some(s) => Ok(reply(StatusCode::OK, json!(s))),
            None => Err(fail(StatusCode::NOT_FOUND, "this node is not in a cluster ([cluster] redis is not set)")),
        },
        (&Method::GET, ["delivery"]) => match &st.delivery_status {
            Some(f) => Ok(reply(StatusCode::OK, f())),
            None => Err(fail(StatusCode::NOT_FOUND, "the delivery engine is not running (delivery.enabled = false)")),
        },
        (&Method::GET, ["overview"]) => {
            // Every account and region in use: settings, quota use, and the last 14 days' rates.
            let mut out = Vec::new();
            for a in svc.accounts() {
                for region in svc.regions_of(a.id) {
                    let mut v = region_json(st, a.id, &region).await;
                    let pts = svc.send_statistics(a.id, &region).await.unwrap_or_default();
                    let (sent, bounces, complaints) = pts
                        .iter()
                        .fold((0, 0, 0), |t, p| (t.0 + p.delivery_attempts, t.1 + p.bounces, t.2 + p.complaints));
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
        (&Method::GET, ["queue"]) => {
            let (f, limit) = queue_filter(&raw.query, None)?;
            let rows = svc.queue_rows(&f, limit).map_err(admin_error)?;
            Ok(reply(StatusCode::OK, json!(rows)))
        }
        (&Method::GET, ["queue", "summary"]) => {
            let rows = svc.queue_summary().map_err(admin_error)?;
            Ok(reply(StatusCode::OK, json!(rows)))
        }
        (&Method::GET, ["queue", id]) => {
            let (f, _) = queue_filter(&raw.query, Some(id))?;
            let rows = svc.queue_rows(&f, usize::MAX).map_err(admin_error)?;
            if rows.is_empty() {
                return Err(fail(StatusCode::NOT_FOUND, format!("no message {id} in the spool")));
            }
            Ok(reply(StatusCode::OK, json!(rows)))
        }
        (&Method::POST, ["queue", action]) | (&Method::POST, ["queue", _, action]) => {
            let id = match segs.as_slice() {
                [_, id, _] => Some(*id),
                _ => None,
            };
            let (f, _) = queue_filter(&raw.query, id)?;
            if id.is_none() && f.is_unfiltered() {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    "a queue command needs a message id or at least one filter (state, account, recipient, lane, older_than_seconds)",
                ));
            }
            let n = match *action {
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
        (&Method::GET, ["accounts"]) => {
            let list: Vec<Value> = svc
                .accounts()
                .iter()
                .map(|a| json!({"name": a.name, "access_key_id": a.access_key_id, "created_ms": a.created_ms}))
                .collect();
            Ok(reply(StatusCode::OK, json!(list)))
        }
        (&Method::GET, ["accounts", name, "credentials"]) => {
            let a = svc.account_by_name(name).map_err(admin_error)?;
            Ok(reply(
                StatusCode::OK,
                json!({"name": a.name, "access_key_id": a.access_key_id, "secret_access_key": a.secret}),
            ))
        }
        (m, ["accounts", name, "regions", region, rest @ ..]) => {
            if !is_region(region) || !svc.region_known(region) {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    format!("'{region}' is not a region this server answers for (see `regions` in weir.toml)"),
                ));
            }
            let a = svc.account_by_name(name).map_err(admin_error)?;
            match (m, rest) {
                (&Method::GET, []) => Ok(reply(StatusCode::OK, region_json(st, a.id, region).await)),
                (&Method::PUT, []) => {
                    let patch: RegionPatch = parse(&raw.body)?;
                    patch.validate().map_err(|m| fail(StatusCode::BAD_REQUEST, m))?;
                    let now = svc.now_ms();
                    svc.update_region_settings(a.id, region, |s| patch.apply(s, now)).await.map_err(admin_error)?;
                    Ok(reply(StatusCode::OK, region_json(st, a.id, region).await))
                }
                (&Method::POST, ["identities"]) => {
                    #[derive(Deserialize)]
                    struct In {
                        identity: String,
                        #[serde(default)]
                        verified: bool,
                    }
                    let i: In = parse(&raw.body)?;
                    let (kind, check) = if i.identity.contains('@') {
                        (IdentityKind::EmailAddress, i.identity.clone())
                    } else {
                        (IdentityKind::Domain, format!("x@{}", i.identity))
                    };
                    weir_mail::address::validate_addr(&check).map_err(|e| {
                        fail(StatusCode::BAD_REQUEST, format!("invalid identity '{}': {}", i.identity, e.0))
                    })?;
                    let id =
                        svc.put_identity(a.id, region, &i.identity, kind, i.verified).await.map_err(admin_error)?;
                    Ok(reply(
                        StatusCode::OK,
                        json!({"identity": id.identity, "kind": id.kind.as_str(), "status": id.status.as_str()}),
                    ))
                }
                (&Method::POST, ["identities", ident, "dkim"]) => {
                    // Easy DKIM for a domain, with the key type the operator picks (Ed25519 is
                    // only offered here: SES's API knows RSA lengths alone).
                    #[derive(Deserialize)]
                    struct In {
                        key: Option<String>,
                    }
                    let i: In = parse(&raw.body)?;
                    let spec = match i.key.as_deref().unwrap_or("rsa2048") {
                        "rsa2048" => weir_mail::dkim::KeySpec::Rsa2048,
                        "rsa1024" => weir_mail::dkim::KeySpec::Rsa1024,
                        "ed25519" => weir_mail::dkim::KeySpec::Ed25519,
                        other => {
                            return Err(fail(
                                StatusCode::BAD_REQUEST,
                                format!("unknown key type '{other}': rsa2048, rsa1024 or ed25519"),
                            ));
                        }
                    };
                    let id = svc.identity(a.id, region, ident).filter(|i| i.kind == IdentityKind::Domain).ok_or_else(
                        || fail(StatusCode::NOT_FOUND, format!("no domain identity {ident} in {region}")),
                    )?;
                    let d = svc.start_easy_dkim(a.id, region, &id.identity, spec).await.map_err(admin_error)?;
                    Ok(reply(
                        StatusCode::OK,
                        json!({"identity": id.identity, "status": d.status, "tokens": d.tokens,
                                                    "key": d.key_spec}),
                    ))
                }
                (&Method::POST, ["identities", ident, "dkim", "rotate"]) => {
                    let d = svc.rotate_dkim(a.id, region, ident).await.map_err(admin_error)?;
                    Ok(reply(
                        StatusCode::OK,
                        json!({"identity": ident, "status": d.status, "tokens": d.tokens,
                                                    "pending": d.pending_selector, "key": d.next_key_spec}),
                    ))
                }
                (&Method::GET, ["identities", ident, "dns"]) => {
                    // What to publish in DNS for this identity, and the status weir last saw.
                    let i = svc
                        .identity(a.id, region, ident)
                        .ok_or_else(|| fail(StatusCode::NOT_FOUND, format!("no identity {ident} in {region}")))?;
                    let domain = i.identity.rsplit_once('@').map_or(i.identity.as_str(), |(_, d)| d).to_string();
                    let mut records: Vec<Value> = svc
                        .dkim_dns_records(a.id, region, &domain)
                        .into_iter()
                        .map(|(name, value)| json!({"purpose": "DKIM", "name": name, "type": "TXT", "value": value}))
                        .collect();
                    if i.kind == IdentityKind::Domain {
                        records.push(json!({"purpose": "domain verification", "name": format!("_amazonses.{domain}"),
                                            "type": "TXT", "value": i.token}));
                    }
                    if let Some(m) = svc.mail_from(a.id, region, &i.identity) {
                        let host = svc.feedback_mx_host().unwrap_or("<set [feedback] mx_host>");
                        records.push(json!({"purpose": "MAIL FROM: bounces come back to weir", "name": m.domain,
                                            "type": "MX", "value": format!("10 {host}")}));
                        records.push(json!({"purpose": "MAIL FROM: SPF for the return path", "name": m.domain,
                                            "type": "TXT", "value": "v=spf1 mx ~all"}));
                    }
                    records
                        .push(json!({"purpose": "DMARC (a start: monitor only)", "name": format!("_dmarc.{domain}"),
                                        "type": "TXT", "value": "v=DMARC1; p=none;"}));
                    let dkim = svc.dkim(a.id, region, &domain);
                    Ok(reply(
                        StatusCode::OK,
                        json!({"identity": i.identity, "verification": i.status.as_str(),
                               "dkim": dkim.as_ref().map_or("NOT_STARTED", |d| d.status.as_str()),
                               "dkim_signing": dkim.as_ref().is_some_and(|d| d.enabled),
                               "records": records}),
                    ))
                }
                (&Method::GET, ["identities"]) => {
                    let list: Vec<Value> = svc
                        .identities(a.id, region)
                        .iter()
                        .map(|i| json!({"identity": i.identity, "kind": i.kind.as_str(), "status": i.status.as_str()}))
                        .collect();
                    Ok(reply(StatusCode::OK, json!(list)))
                }
                _ => Err(fail(StatusCode::NOT_FOUND, format!("no admin operation at {} {}", raw.method, raw.path))),
            }
        }
        _ => Err(fail(StatusCode::NOT_FOUND, format!("no admin operation at {} {}", raw.method, raw.path))),
    }
}
