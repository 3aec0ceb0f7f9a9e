//! SES v2: REST-JSON under `/v2/email/`.

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::{Value, json};
use weir_mail::address::validate_addr;
use weir_store::model::{Identity, IdentityKind, VerificationStatus};

use crate::auth::Caller;
use crate::error::{ApiError, Flavor};
use crate::v1::{decode_token, encode_token};
use crate::{AppState, RawRequest};

mod configuration_sets;
mod contacts;
mod send;
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
        (&Method::GET, ["account"]) => Ok(ok(get_account(st, caller).await?, rid)),
        (&Method::PUT, ["account", "sending"]) => put_account_sending_attributes(st, caller, raw).await,
        (&Method::PUT, ["account", "suppression"]) => put_account_suppression_attributes(st, caller, raw).await,
        (&Method::POST, ["identities"]) => create_identity(st, caller, raw).await,
        (&Method::GET, ["identities"]) => list_identities(st, caller, raw),
        (&Method::GET, ["identities", id]) => get_email_identity(st, caller, raw, id).await,
        (&Method::PUT, ["identities", id, "mail-from"]) => {
            put_email_identity_mail_from_attributes(st, caller, raw, id).await
        }
        (&Method::PUT, ["identities", id, "dkim"]) => put_email_identity_dkim_attributes(st, caller, raw, id).await,
        (&Method::PUT, ["identities", id, "dkim", "signing"]) => {
            put_email_identity_dkim_signing_attributes(st, caller, raw, id).await
        }
        (&Method::DELETE, ["identities", id]) => delete_email_identity(st, caller, raw, id).await,
        (&Method::PUT, ["suppression", "addresses"]) => put_suppressed_destination(st, caller, raw).await,
        (&Method::GET, ["suppression", "addresses"]) => list_suppressed(st, caller, raw),
        (&Method::GET, ["suppression", "addresses", addr]) => get_suppressed_destination(st, caller, raw, addr).await,
        (&Method::DELETE, ["suppression", "addresses", addr]) => {
            delete_suppressed_destination(st, caller, raw, addr).await
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            format!("weir does not implement {} {}", raw.method, raw.path),
        )),
    }
}

fn check_reason(r: &str) -> Result<(), ApiError> {
    if r == "BOUNCE" || r == "COMPLAINT" {
        Ok(())
    } else {
        Err(bad(format!("Invalid suppression reason '{r}': must be BOUNCE or COMPLAINT.")))
    }
}

fn status_v2(s: VerificationStatus) -> &'static str {
    match s {
        VerificationStatus::Pending => "PENDING",
        VerificationStatus::Success => "SUCCESS",
        VerificationStatus::Failed => "FAILED",
    }
}

fn kind_v2(k: IdentityKind) -> &'static str {
    match k {
        IdentityKind::EmailAddress => "EMAIL_ADDRESS",
        IdentityKind::Domain => "DOMAIN",
    }
}

fn identity_json(st: &AppState, caller: &Caller, i: &Identity) -> Value {
    json!({
        "IdentityType": kind_v2(i.kind),
        "VerifiedForSendingStatus": i.status == VerificationStatus::Success,
        "DkimAttributes": dkim_json(st, caller, &i.identity),
    })
}

/// `DkimAttributes` of an identity: its domain's DKIM (an address shows its domain's).
fn dkim_json(st: &AppState, caller: &Caller, identity: &str) -> Value {
    let domain = identity.rsplit_once('@').map_or(identity, |(_, d)| d);
    match st.svc.dkim(caller.account.id, &caller.region, domain) {
        None => {
            json!({"SigningEnabled": false, "Status": "NOT_STARTED", "SigningAttributesOrigin": "AWS_SES", "Tokens": []})
        }
        Some(d) => {
            let mut v = json!({
                "SigningEnabled": d.enabled,
                "Status": d.status,
                "Tokens": d.tokens,
                "SigningAttributesOrigin": d.origin,
                "LastKeyGenerationTimestamp": d.generated_ms as f64 / 1000.0,
            });
            // Key lengths are SES's RSA ones; an Ed25519 key (a weir extension) shows none.
            if d.key_spec.starts_with("RSA_") {
                v["CurrentSigningKeyLength"] = json!(d.key_spec);
            }
            if d.next_key_spec.starts_with("RSA_") && d.origin == "AWS_SES" {
                v["NextSigningKeyLength"] = json!(d.next_key_spec);
            }
            v
        }
    }
}

/// `DkimSigningAttributes` of CreateEmailIdentity and PutEmailIdentityDkimSigningAttributes.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct SigningAttributes {
    domain_signing_selector: Option<String>,
    domain_signing_private_key: Option<String>,
    next_signing_key_length: Option<String>,
}

/// Start Easy DKIM (`AWS_SES`) or take the customer's key (`EXTERNAL`), with SES's checks.
async fn put_signing(
    st: &AppState,
    caller: &Caller,
    domain: &str,
    origin: &str,
    attrs: Option<SigningAttributes>,
) -> Result<weir_submit::DkimView, ApiError> {
    let attrs = attrs.unwrap_or_default();
    let (acct, region) = (caller.account.id, caller.region.as_str());
    match origin {
        "AWS_SES" => {
            let spec = match attrs.next_signing_key_length.as_deref() {
                None | Some("RSA_2048_BIT") => weir_mail::dkim::KeySpec::Rsa2048,
                Some("RSA_1024_BIT") => weir_mail::dkim::KeySpec::Rsa1024,
                Some(other) => {
                    return Err(bad(format!(
                        "1 validation error detected: Value '{other}' at 'signingAttributes.nextSigningKeyLength' \
                         failed to satisfy constraint: Member must satisfy enum value set: [RSA_1024_BIT, RSA_2048_BIT]"
                    )));
                }
            };
            st.svc.start_easy_dkim(acct, region, domain, spec).await.map_err(|e| ApiError::from_admin(e, Flavor::V2))
        }
        "EXTERNAL" => {
            let selector = attrs
                .domain_signing_selector
                .ok_or_else(|| bad("DomainSigningSelector is required when SigningAttributesOrigin is EXTERNAL."))?;
            let key = attrs
                .domain_signing_private_key
                .ok_or_else(|| bad("DomainSigningPrivateKey is required when SigningAttributesOrigin is EXTERNAL."))?;
            let valid_selector = !selector.is_empty()
                && selector.len() <= 63
                && selector.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !selector.starts_with('-')
                && !selector.ends_with('-');
            if !valid_selector {
                return Err(bad(format!(
                    "Invalid DomainSigningSelector {selector}: 1 to 63 letters, digits and inner hyphens."
                )));
            }
            st.svc
                .put_external_dkim(acct, region, domain, &selector, &key)
                .await
                .map_err(|e| ApiError::from_admin(e, Flavor::V2))
        }
        other => Err(bad(format!(
            "1 validation error detected: Value '{other}' at 'signingAttributesOrigin' failed to satisfy constraint: \
             Member must satisfy enum value set: [AWS_SES, EXTERNAL]"
        ))),
    }
}

/// The identity, or SES's NotFoundException.
fn known_identity(st: &AppState, caller: &Caller, id: &str) -> Result<Identity, ApiError> {
    st.svc.identity(caller.account.id, &caller.region, id).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "NotFoundException", format!("Email identity {id} does not exist."))
    })
}

async fn get_account(st: &AppState, caller: &Caller) -> Result<Value, ApiError> {
    let s = st.svc.region_settings(caller.account.id, &caller.region);
    let q = st
        .svc
        .send_quota(caller.account.id, &caller.region)
        .await
        .map_err(|e| ApiError::from_submit(e, Flavor::V2, ""))?;
    Ok(json!({
        "DedicatedIpAutoWarmupEnabled": false,
        "EnforcementStatus": s.enforcement,
        "ProductionAccessEnabled": s.production,
        "SendQuota": {"Max24HourSend": q.max_24h, "MaxSendRate": q.max_rate, "SentLast24Hours": q.sent_last_24h},
        "SendingEnabled": s.may_send(),
        "SuppressionAttributes": {"SuppressedReasons": s.suppressed_reasons},
    }))
}

async fn create_identity(st: &AppState, caller: &Caller, raw: &RawRequest) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        email_identity: Option<String>,
        dkim_signing_attributes: Option<SigningAttributes>,
        #[serde(default)]
        tags: Vec<tags::TagIn>,
        configuration_set_name: Option<String>,
    }
    let i: In = parse(&raw.body)?;
    let ident = i.email_identity.ok_or_else(|| ApiError::missing(&["emailIdentity"]))?;
    let attrs = weir_submit::IdentityAttributes {
        tags: i.tags.into_iter().map(|t| (t.key, t.value)).collect(),
        configuration_set: i.configuration_set_name,
    };
    weir_submit::tag_rules::check_tags(&attrs.tags).map_err(|e| ApiError::from_admin(e, Flavor::V2))?;
    if let Some(set) = &attrs.configuration_set
        && st.svc.configuration_set(caller.account.id, &caller.region, set).is_none()
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFoundException",
            format!("Configuration set <{set}> does not exist."),
        ));
    }
    let kind = if ident.contains('@') {
        validate_addr(&ident).map_err(|e| bad(format!("Invalid email address {ident}: {}", e.0)))?;
        IdentityKind::EmailAddress
    } else {
        validate_addr(&format!("x@{ident}")).map_err(|e| bad(format!("Invalid domain name {ident}: {}", e.0)))?;
        IdentityKind::Domain
    };
    // A supplied key is checked before anything is created.
    if let Some(key) = i.dkim_signing_attributes.as_ref().and_then(|a| a.domain_signing_private_key.as_deref()) {
        weir_mail::dkim::KeyPair::from_base64(key)
            .map_err(|e| bad(format!("Invalid DomainSigningPrivateKey: {e}.")))?;
    }
    if st.svc.identity(caller.account.id, &caller.region, &ident).is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "AlreadyExistsException",
            format!("Email identity {ident} already exists."),
        ));
    }
    let id = st
        .svc
        .put_identity(caller.account.id, &caller.region, &ident, kind, false)
        .await
        .map_err(|e| ApiError::from_admin(e, Flavor::V2))?;
    if kind == IdentityKind::EmailAddress {
        st.svc
            .send_verification(caller.account.id, &caller.region, &ident)
            .await
            .map_err(|e| ApiError::from_submit(e, Flavor::V2, &st.cfg.v2_daily_quota_code))?;
    }
    if attrs != weir_submit::IdentityAttributes::default() {
        st.svc
            .set_identity_attributes(caller.account.id, &caller.region, &ident, attrs)
            .await
            .map_err(|e| ApiError::from_admin(e, Flavor::V2))?;
    }
    // A domain gets DKIM at once, as in SES: the customer's key if given, Easy DKIM otherwise.
    if kind == IdentityKind::Domain {
        let origin = if i.dkim_signing_attributes.as_ref().is_some_and(|a| a.domain_signing_private_key.is_some()) {
            "EXTERNAL"
        } else {
            "AWS_SES"
        };
        put_signing(st, caller, &ident, origin, i.dkim_signing_attributes).await?;
    }
    Ok(ok(identity_json(st, caller, &id), &raw.request_id))
}

async fn put_account_sending_attributes(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
) -> Result<Response, ApiError> {
    let rid = raw.request_id.as_str();
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        sending_enabled: Option<bool>,
    }
    let i: In = parse(&raw.body)?;
    let enabled = i.sending_enabled.unwrap_or(false);
    st.svc
        .update_region_settings(caller.account.id, &caller.region, |s| s.sending_enabled = enabled)
        .await
        .map_err(|e| ApiError::from_admin(e, Flavor::V2))?;
    Ok(ok(json!({}), rid))
}

async fn put_account_suppression_attributes(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
) -> Result<Response, ApiError> {
    let rid = raw.request_id.as_str();
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        suppressed_reasons: Option<Vec<String>>,
    }
    let i: In = parse(&raw.body)?;
    let reasons = i.suppressed_reasons.ok_or_else(|| ApiError::missing(&["suppressedReasons"]))?;
    for r in &reasons {
        check_reason(r)?;
    }
    st.svc
        .update_region_settings(caller.account.id, &caller.region, |s| s.suppressed_reasons = reasons)
        .await
        .map_err(|e| ApiError::from_admin(e, Flavor::V2))?;
    Ok(ok(json!({}), rid))
}

async fn get_email_identity(st: &AppState, caller: &Caller, raw: &RawRequest, id: &str) -> Result<Response, ApiError> {
    let rid = raw.request_id.as_str();
    let id = label(id);
    let i = st.svc.identity(caller.account.id, &caller.region, &id).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "NotFoundException", format!("Email identity {id} does not exist."))
    })?;
    let mut v = identity_json(st, caller, &i);
    v["FeedbackForwardingStatus"] = json!(true);
    v["VerificationStatus"] = json!(status_v2(i.status));
    if let Some(m) = st.svc.mail_from(caller.account.id, &caller.region, &id) {
        v["MailFromAttributes"] = json!({"MailFromDomain": m.domain, "MailFromDomainStatus": m.status,
                                         "BehaviorOnMxFailure": m.behavior});
    }
    v["Policies"] = json!({});
    let attrs = st.svc.identity_attributes(caller.account.id, &caller.region, &id);
    v["Tags"] = json!(attrs.tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>());
    if let Some(set) = attrs.configuration_set {
        v["ConfigurationSetName"] = json!(set);
    }
    Ok(ok(v, rid))
}

async fn put_email_identity_mail_from_attributes(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
    id: &str,
) -> Result<Response, ApiError> {
    let rid = raw.request_id.as_str();
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        mail_from_domain: Option<String>,
        behavior_on_mx_failure: Option<String>,
    }
    let id = label(id);
    let i: In = parse(&raw.body)?;
    let behavior = match i.behavior_on_mx_failure.as_deref() {
        None | Some("USE_DEFAULT_VALUE") => "USE_DEFAULT_VALUE",
        Some("REJECT_MESSAGE") => "REJECT_MESSAGE",
        Some(v) => {
            return Err(bad(format!(
                "1 validation error detected: Value '{v}' at 'behaviorOnMxFailure' failed to satisfy \
                 constraint: Member must satisfy enum value set: [REJECT_MESSAGE, USE_DEFAULT_VALUE]"
            )));
        }
    };
    known_identity(st, caller, &id)?;
    st.svc
        .set_mail_from(caller.account.id, &caller.region, &id, i.mail_from_domain.as_deref(), behavior)
        .await
        .map_err(|e| ApiError::from_admin(e, Flavor::V2))?;
    Ok(ok(json!({}), rid))
}

async fn put_email_identity_dkim_attributes(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
    id: &str,
) -> Result<Response, ApiError> {
    let rid = raw.request_id.as_str();
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        signing_enabled: Option<bool>,
    }
    let id = label(id);
    let i: In = parse(&raw.body)?;
    known_identity(st, caller, &id)?;
    st.svc
        .set_dkim_enabled(caller.account.id, &caller.region, &id, i.signing_enabled.unwrap_or(false))
        .await
        .map_err(|e| ApiError::from_admin(e, Flavor::V2))?;
    Ok(ok(json!({}), rid))
}

async fn put_email_identity_dkim_signing_attributes(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
    id: &str,
) -> Result<Response, ApiError> {
    let rid = raw.request_id.as_str();
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        signing_attributes_origin: Option<String>,
        signing_attributes: Option<SigningAttributes>,
    }
    let id = label(id);
    let i: In = parse(&raw.body)?;
    let origin = i.signing_attributes_origin.ok_or_else(|| ApiError::missing(&["signingAttributesOrigin"]))?;
    let ident = known_identity(st, caller, &id)?;
    if ident.kind != IdentityKind::Domain {
        return Err(bad(format!("DKIM signing attributes are set on a domain identity; {id} is an email address.")));
    }
    let d = put_signing(st, caller, &id, &origin, i.signing_attributes).await?;
    Ok(ok(json!({"DkimStatus": d.status, "DkimTokens": d.tokens}), rid))
}

async fn delete_email_identity(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
    id: &str,
) -> Result<Response, ApiError> {
    let rid = raw.request_id.as_str();
    let id = label(id);
    st.svc.delete_identity(caller.account.id, &caller.region, &id).await.map_err(|e| match e {
        weir_submit::AdminError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "NotFoundException", format!("Email identity {id} does not exist."))
        }
        e => ApiError::from_admin(e, Flavor::V2),
    })?;
    Ok(ok(json!({}), rid))
}

async fn put_suppressed_destination(st: &AppState, caller: &Caller, raw: &RawRequest) -> Result<Response, ApiError> {
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
    check_reason(&reason)?;
    st.svc
        .put_suppressed(caller.account.id, &caller.region, &addr, &reason, None)
        .await
        .map_err(|e| ApiError::from_admin(e, Flavor::V2))?;
    Ok(ok(json!({}), rid))
}

async fn get_suppressed_destination(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
    addr: &str,
) -> Result<Response, ApiError> {
    let rid = raw.request_id.as_str();
    let addr = label(addr);
    let s = st.svc.suppressed(caller.account.id, &caller.region, &addr).ok_or_else(|| {
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

async fn delete_suppressed_destination(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
    addr: &str,
) -> Result<Response, ApiError> {
    let rid = raw.request_id.as_str();
    let addr = label(addr);
    st.svc
        .delete_suppressed(caller.account.id, &caller.region, &addr)
        .await
        .map_err(|e| ApiError::from_admin(e, Flavor::V2))?;
    Ok(ok(json!({}), rid))
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

fn list_identities(st: &AppState, caller: &Caller, raw: &RawRequest) -> Result<Response, ApiError> {
    let q = query_pairs(&raw.query);
    let size = page_size(&q, 1000)?;
    let start = next_token(&q)?;
    let all = st.svc.identities(caller.account.id, &caller.region);
    let out = page(&all, start, size, "EmailIdentities", |i| {
        json!({"IdentityType": kind_v2(i.kind), "IdentityName": i.identity, "SendingEnabled": true,
                   "VerificationStatus": status_v2(i.status)})
    });
    Ok(ok(out, &raw.request_id))
}

fn parse_time(v: &str) -> Result<i64, ApiError> {
    if let Ok(secs) = v.parse::<f64>() {
        return Ok((secs * 1000.0) as i64);
    }
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|d| d.timestamp_millis())
        .map_err(|_| bad(format!("Invalid timestamp '{v}': use ISO-8601 (2024-01-01T00:00:00Z) or epoch seconds.")))
}

fn list_suppressed(st: &AppState, caller: &Caller, raw: &RawRequest) -> Result<Response, ApiError> {
    let q = query_pairs(&raw.query);
    let reasons: Vec<&str> = q.iter().filter(|(k, _)| k == "Reason").map(|(_, v)| v.as_str()).collect();
    for r in &reasons {
        check_reason(r)?;
    }
    let start_ms = q.iter().find(|(k, _)| k == "StartDate").map(|(_, v)| parse_time(v)).transpose()?;
    let end_ms = q.iter().find(|(k, _)| k == "EndDate").map(|(_, v)| parse_time(v)).transpose()?;
    let size = page_size(&q, 1000)?;
    let start = next_token(&q)?;
    let all: Vec<_> = st
        .svc
        .suppression_list(caller.account.id, &caller.region)
        .into_iter()
        .filter(|s| reasons.is_empty() || reasons.contains(&s.reason.as_str()))
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
