//! SES v1: the AWS Query protocol (`POST /`, `Action=…`, XML responses).

use axum::response::Response;
use base64::Engine as _;
use weir_mail::address::validate_addr;
use weir_store::model::{DnsStatus, IdentityKind, MailFromBehavior, VerificationStatus};

use crate::auth::Caller;
use crate::error::{ApiError, Flavor};
use crate::query::Params;
use crate::xml::{self, el, members};
use crate::{AppState, RawRequest};

mod configuration_sets;
mod send;
mod templates;

const VERSION: &str = "2010-12-01";

/// Handle one authenticated Query request.
pub async fn handle(st: &AppState, caller: &Caller, raw: &RawRequest) -> Response {
    let p = Params::parse(&raw.body);
    let action = p.get("Action").unwrap_or("").to_string();
    match run(st, caller, &p, &action, &raw.request_id).await {
        Ok(r) => r,
        Err(e) => e.render(Flavor::V1, &raw.request_id),
    }
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 { format!("{v:.1}") } else { format!("{v}") }
}

pub(crate) fn required<'a>(p: &'a Params, key: &str, member: &str) -> Result<&'a str, ApiError> {
    p.get(key).ok_or_else(|| ApiError::missing(&[member]))
}

pub(crate) fn tags(p: &Params) -> Vec<(String, String)> {
    p.struct_list("Tags", &["Name", "Value"])
        .into_iter()
        .map(|mut r| (r[0].take().unwrap_or_default(), r[1].take().unwrap_or_default()))
        .collect()
}

fn check_domain(domain: &str) -> Result<(), ApiError> {
    validate_addr(&format!("x@{domain}"))
        .map_err(|e| ApiError::invalid(format!("Invalid domain name {domain}: {}", e.0)))
}

/// What every action needs: the request and who sent it.
#[derive(Clone, Copy)]
pub(crate) struct Cx<'a> {
    pub(crate) svc: &'a weir_submit::Service,
    pub(crate) caller: &'a Caller,
    pub(crate) acct: i64,
    pub(crate) region: &'a str,
    pub(crate) p: &'a Params,
    pub(crate) action: &'a str,
    pub(crate) rid: &'a str,
}

async fn run(st: &AppState, caller: &Caller, p: &Params, action: &str, rid: &str) -> Result<Response, ApiError> {
    let cx = Cx { svc: &st.svc, caller, acct: caller.account.id, region: caller.region.as_str(), p, action, rid };
    if action.is_empty() {
        return Err(ApiError::new(axum::http::StatusCode::BAD_REQUEST, "MissingAction", "Missing Action"));
    }
    let version = p.get("Version").unwrap_or(VERSION);
    if version != VERSION {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "InvalidAction",
            format!("Could not find operation {action} for version {version}"),
        ));
    }
    // Most actions (SendEmail among them) have no constraint: no structure is built for them.
    let rules = crate::validate::v1_rules(action);
    if !rules.is_empty()
        && let Some(m) = crate::validate::violations(rules, &crate::validate::query_tree(p))
    {
        return Err(ApiError::new(axum::http::StatusCode::BAD_REQUEST, "ValidationError", m));
    }
    match action {
        "SendEmail" => send::send_email(&cx).await,
        "SendRawEmail" => send::send_raw_email(&cx).await,
        "SendTemplatedEmail" => send::send_templated_email(&cx).await,
        "SendBulkTemplatedEmail" => send::send_bulk_templated_email(&cx).await,
        "CreateTemplate" => templates::create_template(&cx, false).await,
        "UpdateTemplate" => templates::create_template(&cx, true).await,
        "GetTemplate" => templates::get_template(&cx),
        "ListTemplates" => templates::list_templates(&cx),
        "DeleteTemplate" => templates::delete_template(&cx).await,
        "TestRenderTemplate" => templates::test_render_template(&cx).await,
        "CreateConfigurationSet" => configuration_sets::create(&cx).await,
        "DescribeConfigurationSet" => configuration_sets::describe(&cx),
        "ListConfigurationSets" => configuration_sets::list(&cx),
        "DeleteConfigurationSet" => configuration_sets::delete(&cx).await,
        "CreateConfigurationSetEventDestination" => configuration_sets::put_event_destination(&cx, false).await,
        "UpdateConfigurationSetEventDestination" => configuration_sets::put_event_destination(&cx, true).await,
        "DeleteConfigurationSetEventDestination" => configuration_sets::delete_event_destination(&cx).await,
        "UpdateConfigurationSetSendingEnabled" => configuration_sets::update_sending_enabled(&cx).await,
        "PutConfigurationSetDeliveryOptions" => configuration_sets::put_delivery_options(&cx).await,
        "GetSendQuota" => get_send_quota(&cx).await,
        "GetSendStatistics" => get_send_statistics(&cx).await,
        "GetAccountSendingEnabled" => get_account_sending_enabled(&cx).await,
        "UpdateAccountSendingEnabled" => update_account_sending_enabled(&cx).await,
        "VerifyEmailIdentity" | "VerifyEmailAddress" => verify_email_identity(&cx).await,
        "VerifyDomainIdentity" => verify_domain_identity(&cx).await,
        "ListIdentities" => list_identities(&cx).await,
        "ListVerifiedEmailAddresses" => list_verified_email_addresses(&cx).await,
        "GetIdentityVerificationAttributes" => get_identity_verification_attributes(&cx).await,
        "VerifyDomainDkim" => verify_domain_dkim(&cx).await,
        "GetIdentityDkimAttributes" => get_identity_dkim_attributes(&cx).await,
        "SetIdentityDkimEnabled" => set_identity_dkim_enabled(&cx).await,
        "SetIdentityMailFromDomain" => set_identity_mail_from_domain(&cx).await,
        "GetIdentityMailFromDomainAttributes" => get_identity_mail_from_domain_attributes(&cx).await,
        "DeleteIdentity" | "DeleteVerifiedEmailAddress" => delete_identity(&cx).await,
        other => Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "InvalidAction",
            format!("Could not find operation {other} for version {version}"),
        )),
    }
}

async fn get_send_quota(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let Cx { svc, acct, region, action, rid, .. } = *cx;
    let q = svc.quotas().send_quota(acct, region).await.map_err(|e| ApiError::from_submit(e, Flavor::V1, ""))?;
    let inner = format!(
        "<Max24HourSend>{}</Max24HourSend><MaxSendRate>{}</MaxSendRate><SentLast24Hours>{}</SentLast24Hours>",
        num(q.max_24h),
        num(q.max_rate),
        num(q.sent_last_24h)
    );
    Ok(xml::ok(action, Some(&inner), rid))
}

async fn get_send_statistics(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let Cx { svc, acct, region, action, rid, .. } = *cx;
    let points = svc
        .quotas()
        .send_statistics(acct, region)
        .await
        .map_err(|e| ApiError::from_admin(weir_submit::AdminError::Storage(e), Flavor::V1))?;
    let inner: String = points
        .iter()
        .map(|d| {
            let ts = chrono::DateTime::from_timestamp(d.bucket, 0).unwrap_or_default();
            format!(
                "<member><Timestamp>{}</Timestamp><DeliveryAttempts>{}</DeliveryAttempts><Bounces>{}</Bounces><Complaints>{}</Complaints><Rejects>{}</Rejects></member>",
                ts.format("%Y-%m-%dT%H:%M:%SZ"),
                d.delivery_attempts,
                d.bounces,
                d.complaints,
                d.rejects
            )
        })
        .collect();
    let list = if inner.is_empty() {
        "<SendDataPoints/>".to_string()
    } else {
        format!("<SendDataPoints>{inner}</SendDataPoints>")
    };
    Ok(xml::ok(action, Some(&list), rid))
}

async fn get_account_sending_enabled(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let Cx { svc, acct, region, action, rid, .. } = *cx;
    let s = svc.directory().region_settings(acct, region);
    Ok(xml::ok(action, Some(&el("Enabled", if s.may_send() { "true" } else { "false" })), rid))
}

async fn update_account_sending_enabled(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let Cx { svc, acct, region, p, action, rid, .. } = *cx;
    let enabled = match p.get("Enabled") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!("Invalid value for Enabled: '{other}' (use true or false).")));
        }
    };
    svc.directory()
        .update_region_settings(acct, region, |s| s.sending_enabled = enabled)
        .await
        .map_err(|e| ApiError::from_admin(e, Flavor::V1))?;
    Ok(xml::ok(action, None, rid))
}

async fn verify_email_identity(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let Cx { svc, acct, region, p, action, rid, .. } = *cx;
    let addr = required(p, "EmailAddress", "emailAddress")?;
    validate_addr(addr).map_err(|e| ApiError::invalid(e.0))?;
    let id = svc
        .directory()
        .put_identity(acct, region, addr, IdentityKind::EmailAddress, false)
        .await
        .map_err(|e| ApiError::from_admin(e, Flavor::V1))?;
    if id.status != VerificationStatus::Success {
        svc.verification()
            .send_verification(acct, region, addr)
            .await
            .map_err(|e| ApiError::from_submit(e, Flavor::V1, ""))?;
    }
    Ok(xml::ok(action, (action == "VerifyEmailIdentity").then_some(""), rid))
}

async fn verify_domain_identity(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let Cx { svc, acct, region, p, action, rid, .. } = *cx;
    let domain = required(p, "Domain", "domain")?;
    check_domain(domain)?;
    let id = svc
        .directory()
        .put_identity(acct, region, domain, IdentityKind::Domain, false)
        .await
        .map_err(|e| ApiError::from_admin(e, Flavor::V1))?;
    Ok(xml::ok(action, Some(&el("VerificationToken", &id.token)), rid))
}

async fn list_identities(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let Cx { svc, acct, region, p, action, rid, .. } = *cx;
    let kind = match p.get("IdentityType") {
        None | Some("") => None,
        Some(t) => Some(
            IdentityKind::parse(t)
                .ok_or_else(|| ApiError::not_in_enum("identityType", t, &["Domain", "EmailAddress"]))?,
        ),
    };
    let max: usize = match p.get("MaxItems") {
        None => 1000,
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::invalid(format!("Invalid MaxItems '{m}': must be between 1 and 1000.")))?,
    };
    let start = decode_token(p.get("NextToken"))?;
    let all: Vec<String> = svc
        .directory()
        .identities(acct, region)
        .into_iter()
        .filter(|i| kind.is_none_or(|k| i.kind == k))
        .map(|i| i.identity)
        .collect();
    let page: Vec<&str> = all.iter().skip(start).take(max).map(String::as_str).collect();
    let mut inner = members("Identities", page.iter().copied());
    if start + page.len() < all.len() {
        inner.push_str(&el("NextToken", &encode_token(start + page.len())));
    }
    Ok(xml::ok(action, Some(&inner), rid))
}

async fn list_verified_email_addresses(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let Cx { svc, acct, region, action, rid, .. } = *cx;
    let ids = svc.directory().identities(acct, region);
    let verified = ids
        .iter()
        .filter(|i| i.kind == IdentityKind::EmailAddress && i.status == VerificationStatus::Success)
        .map(|i| i.identity.as_str());
    Ok(xml::ok(action, Some(&members("VerifiedEmailAddresses", verified)), rid))
}

async fn get_identity_verification_attributes(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let Cx { svc, acct, region, p, action, rid, .. } = *cx;
    let attrs = identity_attributes(svc, acct, region, p, "VerificationAttributes", |i| {
        let token = if i.kind == IdentityKind::Domain { el("VerificationToken", &i.token) } else { String::new() };
        format!("<VerificationStatus>{}</VerificationStatus>{token}", i.status.as_str())
    })?;
    Ok(xml::ok(action, Some(&attrs), rid))
}

async fn verify_domain_dkim(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let Cx { svc, acct, region, p, action, rid, .. } = *cx;
    let domain = required(p, "Domain", "domain")?;
    check_domain(domain)?;
    if svc.directory().identity(acct, region, domain).is_none() {
        svc.directory()
            .put_identity(acct, region, domain, IdentityKind::Domain, false)
            .await
            .map_err(|e| ApiError::from_admin(e, Flavor::V1))?;
    }
    let d = svc
        .dkim()
        .start_easy_dkim(acct, region, domain, weir_mail::dkim::KeySpec::Rsa2048)
        .await
        .map_err(|e| ApiError::from_admin(e, Flavor::V1))?;
    Ok(xml::ok(action, Some(&members("DkimTokens", d.tokens.iter().map(String::as_str))), rid))
}

async fn get_identity_dkim_attributes(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let Cx { svc, acct, region, p, action, rid, .. } = *cx;
    let attrs = identity_attributes(svc, acct, region, p, "DkimAttributes", |i| {
        // An address shows its domain's DKIM (signing follows the From domain).
        let domain = i.identity.rsplit_once('@').map_or(i.identity.as_str(), |(_, d)| d);
        let (enabled, status, tokens) = match svc.dkim().dkim(acct, region, domain) {
            Some(d) => (d.enabled, v1_status(&d.status), members("DkimTokens", d.tokens.iter().map(String::as_str))),
            None => (false, "NotStarted", String::new()),
        };
        format!("<DkimEnabled>{enabled}</DkimEnabled><DkimVerificationStatus>{status}</DkimVerificationStatus>{tokens}")
    })?;
    Ok(xml::ok(action, Some(&attrs), rid))
}

async fn set_identity_dkim_enabled(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let Cx { svc, acct, region, p, action, rid, .. } = *cx;
    let ident = required(p, "Identity", "identity")?;
    let enabled = match required(p, "DkimEnabled", "dkimEnabled")? {
        "true" => true,
        "false" => false,
        v => return Err(ApiError::invalid(format!("Invalid DkimEnabled '{v}': must be true or false."))),
    };
    if ident.contains('@') {
        return Err(ApiError::invalid(format!(
            "weir keeps DKIM per domain: enable or disable it on the domain of {ident}."
        )));
    }
    svc.dkim().set_dkim_enabled(acct, region, ident, enabled).await.map_err(|e| ApiError::from_admin(e, Flavor::V1))?;
    Ok(xml::ok(action, Some(""), rid))
}

async fn set_identity_mail_from_domain(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let Cx { svc, acct, region, p, action, rid, .. } = *cx;
    let ident = required(p, "Identity", "identity")?;
    let behavior = match p.get("BehaviorOnMXFailure") {
        None | Some("") | Some("UseDefaultValue") => MailFromBehavior::UseDefaultValue,
        Some("RejectMessage") => MailFromBehavior::RejectMessage,
        Some(v) => {
            return Err(ApiError::invalid(format!(
                "1 validation error detected: Value '{v}' at 'behaviorOnMXFailure' failed to satisfy \
                 constraint: Member must satisfy enum value set: [RejectMessage, UseDefaultValue]"
            )));
        }
    };
    if svc.directory().identity(acct, region, ident).is_none() {
        return Err(ApiError::invalid(format!("Identity {ident} is invalid. Must be a verified domain or address.")));
    }
    svc.mail_from()
        .set_mail_from(acct, region, ident, p.get("MailFromDomain"), behavior)
        .await
        .map_err(|e| ApiError::from_admin(e, Flavor::V1))?;
    Ok(xml::ok(action, Some(""), rid))
}

async fn get_identity_mail_from_domain_attributes(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let Cx { svc, acct, region, p, action, rid, .. } = *cx;
    let attrs = identity_attributes(svc, acct, region, p, "MailFromDomainAttributes", |i| {
        let (domain, status, behavior) = match svc.mail_from().mail_from(acct, region, &i.identity) {
            Some(m) => (
                m.domain,
                v1_status(&m.status),
                if m.behavior == MailFromBehavior::RejectMessage { "RejectMessage" } else { "UseDefaultValue" },
            ),
            None => (String::new(), "Pending", "UseDefaultValue"),
        };
        format!(
            "<MailFromDomain>{}</MailFromDomain><MailFromDomainStatus>{status}</MailFromDomainStatus>\
             <BehaviorOnMXFailure>{behavior}</BehaviorOnMXFailure>",
            xml::escape(&domain)
        )
    })?;
    Ok(xml::ok(action, Some(&attrs), rid))
}

async fn delete_identity(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let Cx { svc, acct, region, p, action, rid, .. } = *cx;
    let (key, member) =
        if action == "DeleteIdentity" { ("Identity", "identity") } else { ("EmailAddress", "emailAddress") };
    let ident = required(p, key, member)?;
    // SES answers success whether or not the identity existed.
    match svc.delete_identity(acct, region, ident).await {
        Ok(()) | Err(weir_submit::AdminError::NotFound(_)) => {}
        Err(e) => return Err(ApiError::from_admin(e, Flavor::V1)),
    }
    Ok(xml::ok(action, (action == "DeleteIdentity").then_some(""), rid))
}

/// The `<Wrapper><entry><key>identity</key><value>…</value></entry>…</Wrapper>` map of the
/// Get…Attributes actions, over the requested identities that exist.
fn identity_attributes(
    svc: &weir_submit::Service,
    acct: i64,
    region: &str,
    p: &Params,
    wrapper: &str,
    value: impl Fn(&weir_store::model::Identity) -> String,
) -> Result<String, ApiError> {
    if !p.has("Identities") {
        return Err(ApiError::missing(&["identities"]));
    }
    let mut inner = String::new();
    for w in &p.list("Identities") {
        if let Some(i) = svc.directory().identity(acct, region, w) {
            inner.push_str(&format!("<entry><key>{}</key><value>{}</value></entry>", xml::escape(w), value(&i)));
        }
    }
    Ok(if inner.is_empty() { format!("<{wrapper}/>") } else { format!("<{wrapper}>{inner}</{wrapper}>") })
}

/// SES v1's spelling of a DKIM or MAIL FROM status.
/// SES v1's spelling of a DNS check status.
fn v1_status(s: &DnsStatus) -> &'static str {
    match s {
        DnsStatus::Success => "Success",
        DnsStatus::Failed => "Failed",
        DnsStatus::TemporaryFailure => "TemporaryFailure",
        DnsStatus::NotStarted => "NotStarted",
        DnsStatus::Pending => "Pending",
    }
}

/// Pagination tokens are opaque to clients; here they encode an offset.
pub fn encode_token(offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("weir:{offset}"))
}

/// Decode a pagination token (0 when absent).
pub fn decode_token(token: Option<&str>) -> Result<usize, ApiError> {
    let Some(t) = token.filter(|t| !t.is_empty()) else {
        return Ok(0);
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("weir:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "InvalidNextToken",
                format!("The NextToken '{t}' is not valid."),
            )
        })
}

/// An XML timestamp from Unix milliseconds.
fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}
