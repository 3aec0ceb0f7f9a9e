//! v2 configuration sets: Create/Get/List/Delete, the Put…Options actions, and event
//! destinations.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use weir_store::model::SuppressionReason;
use weir_submit::{AdminError, ConfigurationSet, EventDestination};

use super::{bad, next_token, ok, page, page_size, parse, query_pairs};
use crate::auth::Caller;
use crate::error::{ApiError, Flavor};
use crate::{AppState, RawRequest};

const EVENT_TYPES: [&str; 10] = [
    "SEND",
    "REJECT",
    "BOUNCE",
    "COMPLAINT",
    "DELIVERY",
    "OPEN",
    "CLICK",
    "RENDERING_FAILURE",
    "DELIVERY_DELAY",
    "SUBSCRIPTION",
];
const DESTINATION_KINDS: [&str; 5] = [
    "SnsDestination",
    "KinesisFirehoseDestination",
    "CloudWatchDestination",
    "EventBridgeDestination",
    "PinpointDestination",
];

fn err(e: AdminError) -> ApiError {
    match e {
        AdminError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "NotFoundException", m),
        other => ApiError::from_admin(other, Flavor::V2),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Options {
    tracking_options: Option<Tracking>,
    delivery_options: Option<Delivery>,
    reputation_options: Option<Reputation>,
    sending_options: Option<Sending>,
    suppression_options: Option<Suppression>,
    #[serde(default)]
    tags: Vec<Tag>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Tracking {
    custom_redirect_domain: Option<String>,
    https_policy: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Delivery {
    tls_policy: Option<String>,
    sending_pool_name: Option<String>,
    max_delivery_seconds: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Reputation {
    reputation_metrics_enabled: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Sending {
    sending_enabled: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Suppression {
    suppressed_reasons: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    key: String,
    value: String,
}

fn apply_tracking(s: &mut ConfigurationSet, t: Tracking) -> Result<(), ApiError> {
    if let Some(p) = &t.https_policy
        && !["REQUIRE", "REQUIRE_OPEN_ONLY", "OPTIONAL"].contains(&p.as_str())
    {
        return Err(ApiError::not_in_enum("httpsPolicy", p, &["REQUIRE", "REQUIRE_OPEN_ONLY", "OPTIONAL"]).for_v2());
    }
    s.custom_redirect_domain = t.custom_redirect_domain;
    s.https_policy = t.https_policy;
    Ok(())
}

fn apply_delivery(s: &mut ConfigurationSet, d: Delivery) -> Result<(), ApiError> {
    let policy = d.tls_policy.unwrap_or_else(|| "OPTIONAL".into());
    if !["REQUIRE", "OPTIONAL"].contains(&policy.as_str()) {
        return Err(ApiError::not_in_enum("tlsPolicy", &policy, &["REQUIRE", "OPTIONAL"]).for_v2());
    }
    if let Some(m) = d.max_delivery_seconds
        && !(300..=50_400).contains(&m)
    {
        return Err(bad(format!("MaxDeliverySeconds must be between 300 and 50400; it is {m}.")));
    }
    s.tls_policy = policy;
    s.sending_pool_name = d.sending_pool_name;
    s.max_delivery_seconds = d.max_delivery_seconds;
    Ok(())
}

fn apply_suppression(s: &mut ConfigurationSet, reasons: Option<Vec<String>>) -> Result<(), ApiError> {
    let parse = |r: &String| {
        SuppressionReason::parse(r).ok_or_else(|| {
            let all: Vec<&str> = SuppressionReason::ALL.iter().map(|r| r.as_str()).collect();
            ApiError::not_in_enum("suppressedReasons.member", r, &all).for_v2()
        })
    };
    s.suppressed_reasons = reasons.map(|rs| rs.iter().map(parse).collect::<Result<_, _>>()).transpose()?;
    Ok(())
}

fn apply_sending(s: &mut ConfigurationSet, enabled: bool, now_ms: i64) {
    if enabled && !s.sending_enabled {
        s.last_fresh_start_ms = Some(now_ms);
    }
    s.sending_enabled = enabled;
}

pub(super) async fn create(st: &AppState, caller: &Caller, raw: &RawRequest) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        configuration_set_name: Option<String>,
        #[serde(flatten)]
        options: Options,
    }
    let i: In = parse(&raw.body)?;
    let name = i.configuration_set_name.ok_or_else(|| ApiError::missing(&["configurationSetName"]))?;
    let mut set = ConfigurationSet::new(&name, st.svc.now_ms());
    let o = i.options;
    if let Some(t) = o.tracking_options {
        apply_tracking(&mut set, t)?;
    }
    if let Some(d) = o.delivery_options {
        apply_delivery(&mut set, d)?;
    }
    if let Some(r) = o.reputation_options {
        set.reputation_metrics_enabled = r.reputation_metrics_enabled.unwrap_or(false);
    }
    if let Some(s) = o.sending_options {
        set.sending_enabled = s.sending_enabled.unwrap_or(true);
    }
    if let Some(s) = o.suppression_options {
        apply_suppression(&mut set, s.suppressed_reasons)?;
    }
    set.tags = o.tags.into_iter().map(|t| (t.key, t.value)).collect();
    st.svc.resources().create_configuration_set(caller.account.id, &caller.region, set).await.map_err(err)?;
    Ok(ok(json!({}), &raw.request_id))
}

fn find(st: &AppState, caller: &Caller, name: &str) -> Result<ConfigurationSet, ApiError> {
    st.svc.resources().configuration_set(caller.account.id, &caller.region, name).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "NotFoundException", format!("Configuration set <{name}> does not exist."))
    })
}

pub(super) fn get(st: &AppState, caller: &Caller, raw: &RawRequest, name: &str) -> Result<Response, ApiError> {
    let s = find(st, caller, name)?;
    let mut out = json!({
        "ConfigurationSetName": s.name,
        "DeliveryOptions": {"TlsPolicy": s.tls_policy},
        "ReputationOptions": {"ReputationMetricsEnabled": s.reputation_metrics_enabled},
        "SendingOptions": {"SendingEnabled": s.sending_enabled},
        "Tags": s.tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>(),
    });
    if let Some(p) = &s.sending_pool_name {
        out["DeliveryOptions"]["SendingPoolName"] = json!(p);
    }
    if let Some(m) = s.max_delivery_seconds {
        out["DeliveryOptions"]["MaxDeliverySeconds"] = json!(m);
    }
    if let Some(t) = s.last_fresh_start_ms {
        out["ReputationOptions"]["LastFreshStart"] = json!(t as f64 / 1000.0);
    }
    if let Some(d) = &s.custom_redirect_domain {
        out["TrackingOptions"] = json!({"CustomRedirectDomain": d});
        if let Some(p) = &s.https_policy {
            out["TrackingOptions"]["HttpsPolicy"] = json!(p);
        }
    }
    if let Some(r) = &s.suppressed_reasons {
        out["SuppressionOptions"] = json!({"SuppressedReasons": r});
    }
    Ok(ok(out, &raw.request_id))
}

pub(super) fn list(st: &AppState, caller: &Caller, raw: &RawRequest) -> Result<Response, ApiError> {
    let q = query_pairs(&raw.query);
    let size = page_size(&q, 1000)?;
    let start = next_token(&q)?;
    let all = st.svc.resources().configuration_sets(caller.account.id, &caller.region);
    let out = page(&all, start, size, "ConfigurationSets", |s| json!(s.name));
    Ok(ok(out, &raw.request_id))
}

pub(super) async fn delete(st: &AppState, caller: &Caller, raw: &RawRequest, name: &str) -> Result<Response, ApiError> {
    st.svc.resources().delete_configuration_set(caller.account.id, &caller.region, name).await.map_err(err)?;
    Ok(ok(json!({}), &raw.request_id))
}

/// A checked change to a configuration set.
type Change = Box<dyn FnOnce(&mut ConfigurationSet) -> Result<(), ApiError> + Send>;

/// PUT `/configuration-sets/{name}/{options}`: one of the Put…Options actions.
pub(super) async fn put_options(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
    name: &str,
    options: &str,
) -> Result<Response, ApiError> {
    let now = st.svc.now_ms();
    let body = &raw.body;
    // Decoded and checked before the set is touched, so a bad request changes nothing.
    let change: Change = match options {
        "delivery-options" => {
            let d: Delivery = parse(body)?;
            Box::new(move |s| apply_delivery(s, d))
        }
        "sending" => {
            let d: Sending = parse(body)?;
            Box::new(move |s| {
                apply_sending(s, d.sending_enabled.unwrap_or(false), now);
                Ok(())
            })
        }
        "reputation-options" => {
            let d: Reputation = parse(body)?;
            Box::new(move |s| {
                s.reputation_metrics_enabled = d.reputation_metrics_enabled.unwrap_or(false);
                Ok(())
            })
        }
        "suppression-options" => {
            let d: Suppression = parse(body)?;
            Box::new(move |s| apply_suppression(s, d.suppressed_reasons))
        }
        "tracking-options" => {
            let d: Tracking = parse(body)?;
            if d.custom_redirect_domain.is_none() {
                return Err(ApiError::missing(&["customRedirectDomain"]).for_v2());
            }
            Box::new(move |s| apply_tracking(s, d))
        }
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "UnknownOperationException",
                format!("No operation PUT /v2/email/configuration-sets/{{name}}/{other}"),
            ));
        }
    };
    let mut set = find(st, caller, name)?;
    change(&mut set)?;
    st.svc
        .resources()
        .update_configuration_set(caller.account.id, &caller.region, name, move |s| {
            *s = set;
            Ok(())
        })
        .await
        .map_err(err)?;
    Ok(ok(json!({}), &raw.request_id))
}

/// Decode an `EventDestinationDefinition`.
fn definition(name: &str, def: Option<Value>) -> Result<EventDestination, ApiError> {
    let def = def.ok_or_else(|| ApiError::missing(&["eventDestination"]).for_v2())?;
    let types = def.get("MatchingEventTypes").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut matching = Vec::new();
    for t in &types {
        let t = t.as_str().unwrap_or_default();
        if !EVENT_TYPES.contains(&t) {
            return Err(ApiError::not_in_enum("eventDestination.matchingEventTypes.member", t, &EVENT_TYPES).for_v2());
        }
        matching.push(t.to_string());
    }
    let mut target = serde_json::Map::new();
    for k in DESTINATION_KINDS {
        if let Some(v) = def.get(k) {
            target.insert(k.to_string(), v.clone());
        }
    }
    if target.len() != 1 {
        return Err(bad(format!(
            "An event destination needs exactly one of {}; it has {}.",
            DESTINATION_KINDS.join(", "),
            target.len()
        )));
    }
    Ok(EventDestination {
        name: name.to_string(),
        enabled: def.get("Enabled").and_then(Value::as_bool).unwrap_or(false),
        matching_event_types: matching,
        target: Value::Object(target),
    })
}

fn destination_err(e: AdminError) -> ApiError {
    match e {
        AdminError::Conflict(m) => ApiError::new(StatusCode::BAD_REQUEST, "AlreadyExistsException", m),
        other => err(other),
    }
}

pub(super) async fn create_destination(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
    set: &str,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        event_destination_name: Option<String>,
        event_destination: Option<Value>,
    }
    let i: In = parse(&raw.body)?;
    let name = i.event_destination_name.ok_or_else(|| ApiError::missing(&["eventDestinationName"]).for_v2())?;
    let dest = definition(&name, i.event_destination)?;
    st.svc
        .resources()
        .put_event_destination(caller.account.id, &caller.region, set, dest, false)
        .await
        .map_err(destination_err)?;
    Ok(ok(json!({}), &raw.request_id))
}

pub(super) async fn update_destination(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
    set: &str,
    name: &str,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        event_destination: Option<Value>,
    }
    let i: In = parse(&raw.body)?;
    let dest = definition(name, i.event_destination)?;
    st.svc
        .resources()
        .put_event_destination(caller.account.id, &caller.region, set, dest, true)
        .await
        .map_err(destination_err)?;
    Ok(ok(json!({}), &raw.request_id))
}

pub(super) fn get_destinations(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
    set: &str,
) -> Result<Response, ApiError> {
    let s = find(st, caller, set)?;
    let list: Vec<Value> = s
        .event_destinations
        .iter()
        .map(|d| {
            let mut v = json!({"Name": d.name, "Enabled": d.enabled, "MatchingEventTypes": d.matching_event_types});
            if let (Some(o), Some(t)) = (v.as_object_mut(), d.target.as_object()) {
                o.extend(t.clone());
            }
            v
        })
        .collect();
    Ok(ok(json!({ "EventDestinations": list }), &raw.request_id))
}

pub(super) async fn delete_destination(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
    set: &str,
    name: &str,
) -> Result<Response, ApiError> {
    st.svc.resources().delete_event_destination(caller.account.id, &caller.region, set, name).await.map_err(err)?;
    Ok(ok(json!({}), &raw.request_id))
}
