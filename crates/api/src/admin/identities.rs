//! Sending identities of an account in a region: create, list, DKIM, and the DNS records to
//! publish.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use weir_store::model::{Account, IdentityKind};

use super::{admin_error, fail, parse, reply};
use crate::{AppState, RawRequest};

/// `POST …/identities`: an address or a domain, verified if the operator says so.
pub(super) async fn create(st: &AppState, a: &Account, region: &str, raw: &RawRequest) -> Result<Response, Response> {
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
    weir_mail::address::validate_addr(&check)
        .map_err(|e| fail(StatusCode::BAD_REQUEST, format!("invalid identity '{}': {}", i.identity, e.0)))?;
    let id = st.svc.directory().put_identity(a.id, region, &i.identity, kind, i.verified).await.map_err(admin_error)?;
    Ok(reply(StatusCode::OK, json!({"identity": id.identity, "kind": id.kind.as_str(), "status": id.status.as_str()})))
}

/// `GET …/identities`.
pub(super) fn list(st: &AppState, a: &Account, region: &str) -> Result<Response, Response> {
    let list: Vec<Value> = st
        .svc
        .directory()
        .identities(a.id, region)
        .iter()
        .map(|i| json!({"identity": i.identity, "kind": i.kind.as_str(), "status": i.status.as_str()}))
        .collect();
    Ok(reply(StatusCode::OK, json!(list)))
}

/// `POST …/identities/DOMAIN/dkim`: Easy DKIM for a domain, with the key type the operator picks
/// (Ed25519 is only offered here: SES's API knows RSA lengths alone).
pub(super) async fn start_dkim(
    st: &AppState,
    a: &Account,
    region: &str,
    ident: &str,
    raw: &RawRequest,
) -> Result<Response, Response> {
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
    let id = st
        .svc
        .directory()
        .identity(a.id, region, ident)
        .filter(|i| i.kind == IdentityKind::Domain)
        .ok_or_else(|| fail(StatusCode::NOT_FOUND, format!("no domain identity {ident} in {region}")))?;
    let d = st.svc.dkim().start_easy_dkim(a.id, region, &id.identity, spec).await.map_err(admin_error)?;
    Ok(reply(
        StatusCode::OK,
        json!({"identity": id.identity, "status": d.status, "tokens": d.tokens, "key": d.key_spec}),
    ))
}

/// `POST …/identities/DOMAIN/dkim/rotate`: a new key, signing once DNS shows it.
pub(super) async fn rotate_dkim(st: &AppState, a: &Account, region: &str, ident: &str) -> Result<Response, Response> {
    let d = st.svc.dkim().rotate_dkim(a.id, region, ident).await.map_err(admin_error)?;
    Ok(reply(
        StatusCode::OK,
        json!({"identity": ident, "status": d.status, "tokens": d.tokens,
               "pending": d.pending_selector, "key": d.next_key_spec}),
    ))
}

/// `GET …/identities/IDENTITY/dns`: what to publish in DNS for this identity, and the status
/// weir last saw.
pub(super) fn dns(st: &AppState, a: &Account, region: &str, ident: &str) -> Result<Response, Response> {
    let svc = &st.svc;
    let i = svc
        .directory()
        .identity(a.id, region, ident)
        .ok_or_else(|| fail(StatusCode::NOT_FOUND, format!("no identity {ident} in {region}")))?;
    let domain = i.identity.rsplit_once('@').map_or(i.identity.as_str(), |(_, d)| d).to_string();
    let mut records: Vec<Value> = svc
        .dkim()
        .dkim_dns_records(a.id, region, &domain)
        .into_iter()
        .map(|(name, value)| json!({"purpose": "DKIM", "name": name, "type": "TXT", "value": value}))
        .collect();
    if i.kind == IdentityKind::Domain {
        records.push(json!({"purpose": "domain verification", "name": format!("_amazonses.{domain}"),
                            "type": "TXT", "value": i.token}));
    }
    if let Some(m) = svc.mail_from().mail_from(a.id, region, &i.identity) {
        let host = svc.mail_from().feedback_mx_host().unwrap_or("<set [feedback] mx_host>");
        records.push(json!({"purpose": "MAIL FROM: bounces come back to weir", "name": m.domain,
                            "type": "MX", "value": format!("10 {host}")}));
        records.push(json!({"purpose": "MAIL FROM: SPF for the return path", "name": m.domain,
                            "type": "TXT", "value": "v=spf1 mx ~all"}));
    }
    records.push(json!({"purpose": "DMARC (a start: monitor only)", "name": format!("_dmarc.{domain}"),
                        "type": "TXT", "value": "v=DMARC1; p=none;"}));
    let dkim = svc.dkim().dkim(a.id, region, &domain);
    Ok(reply(
        StatusCode::OK,
        json!({"identity": i.identity, "verification": i.status.as_str(),
               "dkim": dkim.as_ref().map_or("NOT_STARTED", |d| d.status.as_str()),
               "dkim_signing": dkim.as_ref().is_some_and(|d| d.enabled),
               "records": records}),
    ))
}
