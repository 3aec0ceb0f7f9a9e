//! v1 configuration sets and their event destinations. Stored in v2's shape; v1 spells event
//! types in lower camel case and destination members in its own case.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use weir_submit::{AdminError, ConfigurationSet, EventDestination};

use super::{Cx, decode_token, encode_token, required};
use crate::error::ApiError;
use crate::xml::{self, el, members};

fn err(e: AdminError) -> ApiError {
    ApiError::from_admin_v1(e, "ConfigurationSetDoesNotExist", "ConfigurationSetAlreadyExists")
}

/// v1 event type ↔ v2 event type.
const EVENT_TYPES: [(&str, &str); 8] = [
    ("send", "SEND"),
    ("reject", "REJECT"),
    ("bounce", "BOUNCE"),
    ("complaint", "COMPLAINT"),
    ("delivery", "DELIVERY"),
    ("open", "OPEN"),
    ("click", "CLICK"),
    ("renderingFailure", "RENDERING_FAILURE"),
];

pub(super) async fn create(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let name = required(cx.p, "ConfigurationSet.Name", "configurationSet.name")?;
    let set = ConfigurationSet::new(name, cx.svc.now_ms());
    cx.svc.resources().create_configuration_set(cx.acct, cx.region, set).await.map_err(|e| match e {
        AdminError::Invalid(m) => ApiError::new(StatusCode::BAD_REQUEST, "InvalidConfigurationSet", m),
        other => err(other),
    })?;
    Ok(xml::ok(cx.action, Some(""), cx.rid))
}

fn get(cx: &Cx<'_>) -> Result<ConfigurationSet, ApiError> {
    let name = required(cx.p, "ConfigurationSetName", "configurationSetName")?;
    cx.svc
        .resources()
        .configuration_set(cx.acct, cx.region, name)
        .ok_or_else(|| err(AdminError::NotFound(format!("Configuration set <{name}> does not exist."))))
}

pub(super) fn describe(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let set = get(cx)?;
    let wanted = cx.p.list("ConfigurationSetAttributeNames");
    for w in &wanted {
        if !["eventDestinations", "trackingOptions", "deliveryOptions", "reputationOptions"].contains(&w.as_str()) {
            return Err(ApiError::not_in_enum(
                "configurationSetAttributeNames",
                w,
                &["eventDestinations", "trackingOptions", "deliveryOptions", "reputationOptions"],
            ));
        }
    }
    let want = |a: &str| wanted.iter().any(|w| w == a);
    let mut inner = format!("<ConfigurationSet>{}</ConfigurationSet>", el("Name", &set.name));
    if want("eventDestinations") {
        let list: String =
            set.event_destinations.iter().map(|d| format!("<member>{}</member>", destination_xml(d))).collect();
        inner.push_str(&if list.is_empty() {
            "<EventDestinations/>".to_string()
        } else {
            format!("<EventDestinations>{list}</EventDestinations>")
        });
    }
    if want("trackingOptions")
        && let Some(d) = &set.custom_redirect_domain
    {
        inner.push_str(&format!("<TrackingOptions>{}</TrackingOptions>", el("CustomRedirectDomain", d)));
    }
    if want("deliveryOptions") {
        let policy = if set.tls_policy == "REQUIRE" { "Require" } else { "Optional" };
        inner.push_str(&format!("<DeliveryOptions>{}</DeliveryOptions>", el("TlsPolicy", policy)));
    }
    if want("reputationOptions") {
        let fresh = set.last_fresh_start_ms.map(|t| el("LastFreshStart", &super::iso(t))).unwrap_or_default();
        inner.push_str(&format!(
            "<ReputationOptions><SendingEnabled>{}</SendingEnabled><ReputationMetricsEnabled>{}</ReputationMetricsEnabled>{fresh}</ReputationOptions>",
            set.sending_enabled, set.reputation_metrics_enabled
        ));
    }
    Ok(xml::ok(cx.action, Some(&inner), cx.rid))
}

fn destination_xml(d: &EventDestination) -> String {
    let types =
        d.matching_event_types.iter().filter_map(|t| EVENT_TYPES.iter().find(|(_, v2)| v2 == t).map(|(v1, _)| *v1));
    let mut out =
        format!("{}<Enabled>{}</Enabled>{}", el("Name", &d.name), d.enabled, members("MatchingEventTypes", types));
    let t = &d.target;
    if let Some(arn) = t["SnsDestination"]["TopicArn"].as_str() {
        out.push_str(&format!("<SNSDestination>{}</SNSDestination>", el("TopicARN", arn)));
    }
    if let Some(f) = t.get("KinesisFirehoseDestination") {
        out.push_str(&format!(
            "<KinesisFirehoseDestination>{}{}</KinesisFirehoseDestination>",
            el("IAMRoleARN", f["IamRoleArn"].as_str().unwrap_or_default()),
            el("DeliveryStreamARN", f["DeliveryStreamArn"].as_str().unwrap_or_default())
        ));
    }
    if let Some(dims) = t["CloudWatchDestination"]["DimensionConfigurations"].as_array() {
        let m: String = dims
            .iter()
            .map(|d| {
                format!(
                    "<member>{}{}{}</member>",
                    el("DimensionName", d["DimensionName"].as_str().unwrap_or_default()),
                    el("DimensionValueSource", d["DimensionValueSource"].as_str().unwrap_or_default()),
                    el("DefaultDimensionValue", d["DefaultDimensionValue"].as_str().unwrap_or_default())
                )
            })
            .collect();
        out.push_str(&format!(
            "<CloudWatchDestination><DimensionConfigurations>{m}</DimensionConfigurations></CloudWatchDestination>"
        ));
    }
    out
}

pub(super) fn list(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let max = match cx.p.get("MaxItems") {
        None => 1000,
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::invalid(format!("Invalid MaxItems '{m}': must be between 1 and 1000.")))?,
    };
    let start = decode_token(cx.p.get("NextToken"))?;
    let all = cx.svc.resources().configuration_sets(cx.acct, cx.region);
    let list: String =
        all.iter().skip(start).take(max).map(|s| format!("<member>{}</member>", el("Name", &s.name))).collect();
    let mut inner = if list.is_empty() {
        "<ConfigurationSets/>".to_string()
    } else {
        format!("<ConfigurationSets>{list}</ConfigurationSets>")
    };
    if start + max < all.len() {
        inner.push_str(&el("NextToken", &encode_token(start + max)));
    }
    Ok(xml::ok(cx.action, Some(&inner), cx.rid))
}

pub(super) async fn delete(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let name = required(cx.p, "ConfigurationSetName", "configurationSetName")?;
    cx.svc.resources().delete_configuration_set(cx.acct, cx.region, name).await.map_err(err)?;
    Ok(xml::ok(cx.action, Some(""), cx.rid))
}

/// Decode `EventDestination.*` into v2's shape.
fn decode_destination(cx: &Cx<'_>) -> Result<EventDestination, ApiError> {
    let p = cx.p;
    let name = required(p, "EventDestination.Name", "eventDestination.name")?;
    if !p.has("EventDestination.MatchingEventTypes") {
        return Err(ApiError::missing(&["eventDestination.matchingEventTypes"]));
    }
    let mut types = Vec::new();
    for t in p.list("EventDestination.MatchingEventTypes") {
        let v2 = EVENT_TYPES.iter().find(|(v1, _)| *v1 == t).map(|(_, v2)| *v2).ok_or_else(|| {
            ApiError::not_in_enum(
                "eventDestination.matchingEventTypes.member",
                &t,
                &EVENT_TYPES.iter().map(|(v1, _)| *v1).collect::<Vec<_>>(),
            )
        })?;
        types.push(v2.to_string());
    }
    let target = if let Some(arn) = p.get("EventDestination.SNSDestination.TopicARN") {
        json!({"SnsDestination": {"TopicArn": arn}})
    } else if p.has("EventDestination.KinesisFirehoseDestination") {
        json!({"KinesisFirehoseDestination": {
            "IamRoleArn": required(p, "EventDestination.KinesisFirehoseDestination.IAMRoleARN", "eventDestination.kinesisFirehoseDestination.iAMRoleARN")?,
            "DeliveryStreamArn": required(p, "EventDestination.KinesisFirehoseDestination.DeliveryStreamARN", "eventDestination.kinesisFirehoseDestination.deliveryStreamARN")?,
        }})
    } else if p.has("EventDestination.CloudWatchDestination") {
        let dims: Vec<Value> = p
            .struct_list(
                "EventDestination.CloudWatchDestination.DimensionConfigurations",
                &["DimensionName", "DimensionValueSource", "DefaultDimensionValue"],
            )
            .into_iter()
            .map(|r| json!({"DimensionName": r[0], "DimensionValueSource": r[1], "DefaultDimensionValue": r[2]}))
            .collect();
        json!({"CloudWatchDestination": {"DimensionConfigurations": dims}})
    } else {
        return Err(ApiError::invalid(
            "An event destination needs one of SNSDestination, KinesisFirehoseDestination or CloudWatchDestination.",
        ));
    };
    Ok(EventDestination {
        name: name.to_string(),
        enabled: p.get("EventDestination.Enabled") == Some("true"),
        matching_event_types: types,
        target,
    })
}

pub(super) async fn put_event_destination(cx: &Cx<'_>, update: bool) -> Result<Response, ApiError> {
    let set = required(cx.p, "ConfigurationSetName", "configurationSetName")?;
    let dest = decode_destination(cx)?;
    let result = cx.svc.resources().put_event_destination(cx.acct, cx.region, set, dest, update).await;
    result.map_err(|e| match e {
        AdminError::Conflict(m) => ApiError::new(StatusCode::BAD_REQUEST, "EventDestinationAlreadyExists", m),
        AdminError::Invalid(m) if m.starts_with("SNS topic") => {
            ApiError::new(StatusCode::BAD_REQUEST, "InvalidSNSDestination", m)
        }
        AdminError::NotFound(m) if m.starts_with("Event destination") => {
            ApiError::new(StatusCode::BAD_REQUEST, "EventDestinationDoesNotExist", m)
        }
        other => err(other),
    })?;
    Ok(xml::ok(cx.action, Some(""), cx.rid))
}

pub(super) async fn delete_event_destination(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let set = required(cx.p, "ConfigurationSetName", "configurationSetName")?;
    let name = required(cx.p, "EventDestinationName", "eventDestinationName")?;
    cx.svc.resources().delete_event_destination(cx.acct, cx.region, set, name).await.map_err(|e| match e {
        AdminError::NotFound(m) if m.starts_with("Event destination") => {
            ApiError::new(StatusCode::BAD_REQUEST, "EventDestinationDoesNotExist", m)
        }
        other => err(other),
    })?;
    Ok(xml::ok(cx.action, Some(""), cx.rid))
}

pub(super) async fn update_sending_enabled(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let set = required(cx.p, "ConfigurationSetName", "configurationSetName")?;
    let enabled = required(cx.p, "Enabled", "enabled")? == "true";
    let now = cx.svc.now_ms();
    cx.svc
        .resources()
        .update_configuration_set(cx.acct, cx.region, set, |s| {
            if enabled && !s.sending_enabled {
                s.last_fresh_start_ms = Some(now);
            }
            s.sending_enabled = enabled;
            Ok(())
        })
        .await
        .map_err(err)?;
    Ok(xml::ok(cx.action, Some(""), cx.rid))
}

pub(super) async fn put_delivery_options(cx: &Cx<'_>) -> Result<Response, ApiError> {
    let set = required(cx.p, "ConfigurationSetName", "configurationSetName")?;
    let policy = match cx.p.get("DeliveryOptions.TlsPolicy") {
        None | Some("Optional") => "OPTIONAL",
        Some("Require") => "REQUIRE",
        Some(v) => return Err(ApiError::not_in_enum("deliveryOptions.tlsPolicy", v, &["Require", "Optional"])),
    };
    cx.svc
        .resources()
        .update_configuration_set(cx.acct, cx.region, set, |s| {
            s.tls_policy = policy.to_string();
            Ok(())
        })
        .await
        .map_err(err)?;
    Ok(xml::ok(cx.action, Some(""), cx.rid))
}
