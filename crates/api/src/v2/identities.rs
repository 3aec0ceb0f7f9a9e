//! Email identities: create, get, list, delete; DKIM, signing and MAIL FROM attributes.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use weir_mail::address::validate_addr;
use weir_store::model::{DkimOrigin, Identity, IdentityKind, MailFromBehavior, VerificationStatus};

use super::*;
use crate::auth::Caller;
use crate::error::{ApiError, Flavor};
use crate::{AppState, RawRequest};

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
    match st.svc.dkim().dkim(caller.account.id, &caller.region, domain) {
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
            if d.next_key_spec.starts_with("RSA_") && d.origin == DkimOrigin::AwsSes {
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
            st.svc
                .dkim()
                .start_easy_dkim(acct, region, domain, spec)
                .await
                .map_err(|e| ApiError::from_admin(e, Flavor::V2))
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
                .dkim()
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
    st.svc.directory().identity(caller.account.id, &caller.region, id).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "NotFoundException", format!("Email identity {id} does not exist."))
    })
}

pub(super) async fn create_identity(st: &AppState, caller: &Caller, raw: &RawRequest) -> Result<Response, ApiError> {
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
        && st.svc.resources().configuration_set(caller.account.id, &caller.region, set).is_none()
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
    if st.svc.directory().identity(caller.account.id, &caller.region, &ident).is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "AlreadyExistsException",
            format!("Email identity {ident} already exists."),
        ));
    }
    let id = st
        .svc
        .directory()
        .put_identity(caller.account.id, &caller.region, &ident, kind, false)
        .await
        .map_err(|e| ApiError::from_admin(e, Flavor::V2))?;
    if kind == IdentityKind::EmailAddress {
        st.svc
            .verification()
            .send_verification(caller.account.id, &caller.region, &ident)
            .await
            .map_err(|e| ApiError::from_submit(e, Flavor::V2, &st.cfg.v2_daily_quota_code))?;
    }
    if attrs != weir_submit::IdentityAttributes::default() {
        st.svc
            .identity_settings()
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

pub(super) async fn get_email_identity(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
    id: &str,
) -> Result<Response, ApiError> {
    let rid = raw.request_id.as_str();
    let id = label(id);
    let i = st.svc.directory().identity(caller.account.id, &caller.region, &id).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "NotFoundException", format!("Email identity {id} does not exist."))
    })?;
    let mut v = identity_json(st, caller, &i);
    v["FeedbackForwardingStatus"] = json!(true);
    v["VerificationStatus"] = json!(status_v2(i.status));
    if let Some(m) = st.svc.mail_from().mail_from(caller.account.id, &caller.region, &id) {
        v["MailFromAttributes"] = json!({"MailFromDomain": m.domain, "MailFromDomainStatus": m.status,
                                         "BehaviorOnMxFailure": m.behavior});
    }
    v["Policies"] = json!({});
    let attrs = st.svc.identity_settings().identity_attributes(caller.account.id, &caller.region, &id);
    v["Tags"] = json!(attrs.tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>());
    if let Some(set) = attrs.configuration_set {
        v["ConfigurationSetName"] = json!(set);
    }
    Ok(ok(v, rid))
}

pub(super) async fn put_email_identity_mail_from_attributes(
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
        None => MailFromBehavior::UseDefaultValue,
        Some(v) => MailFromBehavior::parse(v).ok_or_else(|| {
            bad(format!(
                "1 validation error detected: Value '{v}' at 'behaviorOnMxFailure' failed to satisfy \
                 constraint: Member must satisfy enum value set: [REJECT_MESSAGE, USE_DEFAULT_VALUE]"
            ))
        })?,
    };
    known_identity(st, caller, &id)?;
    st.svc
        .mail_from()
        .set_mail_from(caller.account.id, &caller.region, &id, i.mail_from_domain.as_deref(), behavior)
        .await
        .map_err(|e| ApiError::from_admin(e, Flavor::V2))?;
    Ok(ok(json!({}), rid))
}

pub(super) async fn put_email_identity_dkim_attributes(
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
        .dkim()
        .set_dkim_enabled(caller.account.id, &caller.region, &id, i.signing_enabled.unwrap_or(false))
        .await
        .map_err(|e| ApiError::from_admin(e, Flavor::V2))?;
    Ok(ok(json!({}), rid))
}

pub(super) async fn put_email_identity_dkim_signing_attributes(
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

pub(super) async fn delete_email_identity(
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

pub(super) fn list_identities(st: &AppState, caller: &Caller, raw: &RawRequest) -> Result<Response, ApiError> {
    let q = query_pairs(&raw.query);
    let size = page_size(&q, 1000)?;
    let start = next_token(&q)?;
    let all = st.svc.directory().identities(caller.account.id, &caller.region);
    let out = page(&all, start, size, "EmailIdentities", |i| {
        json!({"IdentityType": kind_v2(i.kind), "IdentityName": i.identity, "SendingEnabled": true,
                   "VerificationStatus": status_v2(i.status)})
    });
    Ok(ok(out, &raw.request_id))
}
