//! v2 contact lists and contacts.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use weir_submit::{AdminError, Contact, ContactList, Topic};

use super::{bad, next_token, ok, page, page_size, parse, query_pairs};
use crate::auth::Caller;
use crate::error::{ApiError, Flavor};
use crate::v1::decode_token;
use crate::{AppState, RawRequest};

fn err(e: AdminError) -> ApiError {
    match e {
        AdminError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "NotFoundException", m),
        other => ApiError::from_admin(other, Flavor::V2),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TopicIn {
    topic_name: Option<String>,
    display_name: Option<String>,
    description: Option<String>,
    default_subscription_status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagIn {
    key: String,
    value: String,
}

fn topics(list: Vec<TopicIn>) -> Result<Vec<Topic>, ApiError> {
    list.into_iter()
        .map(|t| {
            let mut absent = vec![];
            if t.topic_name.is_none() {
                absent.push("topics.member.topicName");
            }
            if t.display_name.is_none() {
                absent.push("topics.member.displayName");
            }
            if t.default_subscription_status.is_none() {
                absent.push("topics.member.defaultSubscriptionStatus");
            }
            if !absent.is_empty() {
                return Err(ApiError::missing(&absent).for_v2());
            }
            Ok(Topic {
                name: t.topic_name.unwrap_or_default(),
                display_name: t.display_name.unwrap_or_default(),
                description: t.description,
                default_status: t.default_subscription_status.unwrap_or_default(),
            })
        })
        .collect()
}

fn topic_json(t: &Topic) -> Value {
    let mut v = json!({"TopicName": t.name, "DisplayName": t.display_name,
                       "DefaultSubscriptionStatus": t.default_status});
    if let Some(d) = &t.description {
        v["Description"] = json!(d);
    }
    v
}

pub(super) async fn create_list(st: &AppState, caller: &Caller, raw: &RawRequest) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        contact_list_name: Option<String>,
        #[serde(default)]
        topics: Vec<TopicIn>,
        description: Option<String>,
        #[serde(default)]
        tags: Vec<TagIn>,
    }
    let i: In = parse(&raw.body)?;
    let name = i.contact_list_name.ok_or_else(|| ApiError::missing(&["contactListName"]).for_v2())?;
    let list = ContactList {
        name,
        description: i.description,
        topics: topics(i.topics)?,
        tags: i.tags.into_iter().map(|t| (t.key, t.value)).collect(),
        created_ms: 0,
        updated_ms: 0,
    };
    st.svc.contacts().create_contact_list(caller.account.id, &caller.region, list).await.map_err(err)?;
    Ok(ok(json!({}), &raw.request_id))
}

fn find(st: &AppState, caller: &Caller, name: &str) -> Result<ContactList, ApiError> {
    st.svc
        .contacts()
        .contact_list(caller.account.id, &caller.region, name)
        .map_err(err)?
        .ok_or_else(|| err(AdminError::NotFound(format!("List with name {name} does not exist."))))
}

pub(super) fn get_list(st: &AppState, caller: &Caller, raw: &RawRequest, name: &str) -> Result<Response, ApiError> {
    let l = find(st, caller, name)?;
    let mut v = json!({
        "ContactListName": l.name,
        "Topics": l.topics.iter().map(topic_json).collect::<Vec<_>>(),
        "CreatedTimestamp": l.created_ms as f64 / 1000.0,
        "LastUpdatedTimestamp": l.updated_ms as f64 / 1000.0,
        "Tags": l.tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>(),
    });
    if let Some(d) = &l.description {
        v["Description"] = json!(d);
    }
    Ok(ok(v, &raw.request_id))
}

pub(super) fn list_lists(st: &AppState, caller: &Caller, raw: &RawRequest) -> Result<Response, ApiError> {
    let q = query_pairs(&raw.query);
    let size = page_size(&q, 1000)?;
    let start = next_token(&q)?;
    let all = st.svc.contacts().contact_lists(caller.account.id, &caller.region).map_err(err)?;
    let out = page(
        &all,
        start,
        size,
        "ContactLists",
        |l| json!({"ContactListName": l.name, "LastUpdatedTimestamp": l.updated_ms as f64 / 1000.0}),
    );
    Ok(ok(out, &raw.request_id))
}

pub(super) async fn update_list(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
    name: &str,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        topics: Option<Vec<TopicIn>>,
        description: Option<String>,
    }
    let i: In = parse(&raw.body)?;
    let t = i.topics.map(topics).transpose()?;
    st.svc
        .contacts()
        .update_contact_list(caller.account.id, &caller.region, name, t, i.description)
        .await
        .map_err(err)?;
    Ok(ok(json!({}), &raw.request_id))
}

pub(super) async fn delete_list(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
    name: &str,
) -> Result<Response, ApiError> {
    st.svc.contacts().delete_contact_list(caller.account.id, &caller.region, name).await.map_err(err)?;
    Ok(ok(json!({}), &raw.request_id))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PreferenceIn {
    topic_name: String,
    subscription_status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContactIn {
    email_address: Option<String>,
    #[serde(default)]
    topic_preferences: Vec<PreferenceIn>,
    #[serde(default)]
    unsubscribe_all: bool,
    attributes_data: Option<String>,
}

fn contact(email: String, i: ContactIn) -> Contact {
    Contact {
        email,
        topic_preferences: i.topic_preferences.into_iter().map(|p| (p.topic_name, p.subscription_status)).collect(),
        unsubscribe_all: i.unsubscribe_all,
        attributes: i.attributes_data,
        created_ms: 0,
        updated_ms: 0,
    }
}

pub(super) async fn create_contact(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
    list: &str,
) -> Result<Response, ApiError> {
    let mut i: ContactIn = parse(&raw.body)?;
    let email = i.email_address.take().ok_or_else(|| ApiError::missing(&["emailAddress"]).for_v2())?;
    st.svc
        .contacts()
        .put_contact(caller.account.id, &caller.region, list, contact(email, i), false)
        .await
        .map_err(err)?;
    Ok(ok(json!({}), &raw.request_id))
}

pub(super) async fn update_contact(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
    list: &str,
    email: &str,
) -> Result<Response, ApiError> {
    let i: ContactIn = parse(&raw.body)?;
    st.svc
        .contacts()
        .put_contact(caller.account.id, &caller.region, list, contact(email.to_string(), i), true)
        .await
        .map_err(err)?;
    Ok(ok(json!({}), &raw.request_id))
}

/// A contact as GetContact and ListContacts show it.
fn contact_json(l: &ContactList, c: &Contact, list_name: Option<&str>) -> Value {
    let prefs: Vec<Value> =
        c.topic_preferences.iter().map(|(t, s)| json!({"TopicName": t, "SubscriptionStatus": s})).collect();
    let defaults: Vec<Value> = l
        .topics
        .iter()
        .filter(|t| !c.topic_preferences.iter().any(|(n, _)| n == &t.name))
        .map(|t| json!({"TopicName": t.name, "SubscriptionStatus": t.default_status}))
        .collect();
    let mut v = json!({
        "EmailAddress": c.email,
        "TopicPreferences": prefs,
        "TopicDefaultPreferences": defaults,
        "UnsubscribeAll": c.unsubscribe_all,
        "LastUpdatedTimestamp": c.updated_ms as f64 / 1000.0,
    });
    if let Some(name) = list_name {
        v["ContactListName"] = json!(name);
        v["CreatedTimestamp"] = json!(c.created_ms as f64 / 1000.0);
        if let Some(a) = &c.attributes {
            v["AttributesData"] = json!(a);
        }
    }
    v
}

pub(super) fn get_contact(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
    list: &str,
    email: &str,
) -> Result<Response, ApiError> {
    let l = find(st, caller, list)?;
    let c = st
        .svc
        .contacts()
        .contact(caller.account.id, &caller.region, list, email)
        .map_err(err)?
        .ok_or_else(|| err(AdminError::NotFound(format!("Contact {email} does not exist in list {list}."))))?;
    Ok(ok(contact_json(&l, &c, Some(list)), &raw.request_id))
}

pub(super) fn list_contacts(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
    list: &str,
) -> Result<Response, ApiError> {
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "PascalCase")]
    struct TopicFilter {
        topic_name: Option<String>,
        #[serde(default)]
        use_default_if_preference_unavailable: bool,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "PascalCase")]
    struct Filter {
        filtered_status: Option<String>,
        topic_filter: Option<TopicFilter>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        filter: Option<Filter>,
        page_size: Option<usize>,
        next_token: Option<String>,
    }
    let i: In = parse(&raw.body)?;
    let size = i.page_size.unwrap_or(1000);
    if !(1..=1000).contains(&size) {
        return Err(bad(format!("Invalid PageSize '{size}': must be between 1 and 1000.")));
    }
    let start = decode_token(i.next_token.as_deref())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "InvalidNextTokenException", e.message))?;
    let l = find(st, caller, list)?;
    let f = i.filter.unwrap_or_default();
    let all: Vec<Contact> = st
        .svc
        .contacts()
        .contacts(caller.account.id, &caller.region, list)
        .map_err(err)?
        .into_iter()
        .filter(|c| {
            let Some(status) = &f.filtered_status else { return true };
            let tf = f.topic_filter.as_ref();
            match tf.and_then(|t| t.topic_name.as_deref()) {
                Some(topic) => {
                    let own = c.topic_preferences.iter().find(|(t, _)| t == topic).map(|(_, s)| s.clone());
                    let effective = match own {
                        Some(s) => Some(s),
                        None if tf.is_some_and(|t| t.use_default_if_preference_unavailable) => {
                            Some(weir_submit::contact_status(&l, None, topic))
                        }
                        None => None,
                    };
                    if c.unsubscribe_all { status == "OPT_OUT" } else { effective.as_deref() == Some(status.as_str()) }
                }
                None => (status == "OPT_OUT") == c.unsubscribe_all,
            }
        })
        .collect();
    let out = page(&all, start, size, "Contacts", |c| contact_json(&l, c, None));
    Ok(ok(out, &raw.request_id))
}

pub(super) async fn delete_contact(
    st: &AppState,
    caller: &Caller,
    raw: &RawRequest,
    list: &str,
    email: &str,
) -> Result<Response, ApiError> {
    find(st, caller, list)?;
    st.svc.contacts().delete_contact(caller.account.id, &caller.region, list, email).await.map_err(err)?;
    Ok(ok(json!({}), &raw.request_id))
}
