//! SES's validation of enum, length and range constraints ([`crate::constraints`], generated
//! from botocore's models), with SES's error text: `1 validation error detected: Value 'x' at
//! 'member' failed to satisfy constraint: Member must satisfy enum value set: [A, B]`.

use serde_json::{Map, Value};

use crate::constraints::{Kind, Rule, V1, V2};
use crate::query::Params;

/// The rules of a v1 action.
pub fn v1_rules(action: &str) -> &'static [Rule] {
    V1.iter().find(|(op, _)| *op == action).map_or(&[], |(_, r)| *r)
}

/// The v2 operation at `method` `path` (matched against the models' URI templates) and its rules.
pub fn v2_rules(method: &str, path: &str) -> Option<(&'static str, &'static [Rule])> {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    V2.iter().find_map(|(op, m, uri, rules)| {
        let tmpl: Vec<&str> = uri.split('?').next().unwrap_or("").trim_end_matches('/').split('/').collect();
        let fits = *m == method
            && tmpl.len() == segs.len()
            && tmpl.iter().zip(&segs).all(|(t, s)| t.starts_with('{') || t == s);
        fits.then_some((*op, *rules))
    })
}

/// Every violation of `rules` in `input`, as SES words them; `None` when there is none.
pub fn violations(rules: &[Rule], input: &Value) -> Option<String> {
    let mut errs = Vec::new();
    for r in rules {
        walk(input, r.path, String::new(), r.kind, &mut errs);
    }
    if errs.is_empty() {
        return None;
    }
    let n = errs.len();
    Some(format!("{n} validation error{} detected: {}", if n == 1 { "" } else { "s" }, errs.join("; ")))
}

/// AWS's spelling of a member in a path: the first letter lower-cased.
fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_lowercase().chain(c).collect()).unwrap_or_default()
}

fn walk(v: &Value, path: &[&str], at: String, kind: Kind, errs: &mut Vec<String>) {
    match path.split_first() {
        None => check(v, &at, kind, errs),
        Some((&"*", rest)) => {
            if let Some(items) = v.as_array() {
                for (i, item) in items.iter().enumerate() {
                    walk(item, rest, format!("{at}.{}.member", i + 1), kind, errs);
                }
            }
        }
        Some((member, rest)) => {
            if let Some(child) = v.get(*member).filter(|c| !c.is_null()) {
                let at = if at.is_empty() { lower_first(member) } else { format!("{at}.{}", lower_first(member)) };
                walk(child, rest, at, kind, errs);
            }
        }
    }
}

fn shown(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(shown).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    };
    // A value of hundreds of kilobytes is not echoed whole.
    if s.chars().count() > 1024 { format!("{}...", s.chars().take(1024).collect::<String>()) } else { s }
}

fn check(v: &Value, at: &str, kind: Kind, errs: &mut Vec<String>) {
    let len = match v {
        Value::String(s) => Some(s.encode_utf16().count() as u64),
        Value::Array(a) => Some(a.len() as u64),
        _ => None,
    };
    let num = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse::<i64>().ok(),
        _ => None,
    };
    let broken = match kind {
        Kind::Enum(allowed) => v
            .as_str()
            .filter(|s| !allowed.contains(s))
            .map(|_| format!("Member must satisfy enum value set: [{}]", allowed.join(", "))),
        Kind::MinLen(min) => {
            len.filter(|l| *l < min).map(|_| format!("Member must have length greater than or equal to {min}"))
        }
        Kind::MaxLen(max) => {
            len.filter(|l| *l > max).map(|_| format!("Member must have length less than or equal to {max}"))
        }
        Kind::Min(min) => {
            num.filter(|n| *n < min).map(|_| format!("Member must have value greater than or equal to {min}"))
        }
        Kind::Max(max) => {
            num.filter(|n| *n > max).map(|_| format!("Member must have value less than or equal to {max}"))
        }
    };
    if let Some(b) = broken {
        errs.push(format!("Value '{}' at '{at}' failed to satisfy constraint: {b}", shown(v)));
    }
}

/// Query parameters as the structure they encode: `A.B` nests, `X.member.N` is element N of X.
pub fn query_tree(p: &Params) -> Value {
    let mut root = Value::Object(Map::new());
    for (k, v) in p.iter() {
        let segs: Vec<&str> = k.split('.').collect();
        insert(&mut root, &segs, v);
    }
    root
}

fn insert(node: &mut Value, segs: &[&str], v: &str) {
    let Some((first, rest)) = segs.split_first() else { return };
    // `member.N`: element N (1-based) of the list this node is.
    if *first == "member"
        && let Some((n, rest)) = rest.split_first()
        && let Ok(i) = n.parse::<usize>()
    {
        if !node.is_array() {
            *node = Value::Array(vec![]);
        }
        if let Value::Array(items) = node {
            if i == 0 || i > 10_000 {
                return;
            }
            while items.len() < i {
                items.push(Value::Null);
            }
            insert_or_set(&mut items[i - 1], rest, v);
        }
        return;
    }
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    if let Value::Object(m) = node {
        insert_or_set(m.entry(first.to_string()).or_insert(Value::Null), rest, v);
    }
}

fn insert_or_set(node: &mut Value, rest: &[&str], v: &str) {
    if rest.is_empty() {
        *node = Value::String(v.to_string());
    } else {
        insert(node, rest, v);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_enum_outside_the_set_is_reported_as_ses_does() {
        let rules = v1_rules("ListIdentities");
        let m = violations(rules, &json!({"IdentityType": "Unknown"})).expect("violation");
        assert_eq!(
            m,
            "1 validation error detected: Value 'Unknown' at 'identityType' failed to satisfy constraint: \
             Member must satisfy enum value set: [Domain, EmailAddress]"
        );
        assert_eq!(violations(rules, &json!({"IdentityType": "Domain"})), None);
    }

    #[test]
    fn nested_list_members_are_named_with_their_index() {
        let (op, rules) = v2_rules("POST", "/v2/email/contact-lists").expect("CreateContactList");
        assert_eq!(op, "CreateContactList");
        let body = json!({"ContactListName": "l", "Topics": [
            {"TopicName": "a", "DisplayName": "A", "DefaultSubscriptionStatus": "OPT_IN"},
            {"TopicName": "b", "DisplayName": "B", "DefaultSubscriptionStatus": "MAYBE"}]});
        let m = violations(rules, &body).expect("violation");
        assert!(m.contains("Value 'MAYBE' at 'topics.2.member.defaultSubscriptionStatus'"), "{m}");
    }

    #[test]
    fn lengths_count_and_several_errors_are_joined() {
        let (_, rules) = v2_rules("POST", "/v2/email/outbound-emails").expect("SendEmail");
        let big = "x".repeat(262_145);
        let body = json!({"Content": {"Template": {"TemplateData": big}}, "FromEmailAddressIdentityArn": ""});
        let m = violations(rules, &body).expect("violations");
        assert!(m.starts_with("2 validation errors detected: "), "{}", &m[..80]);
        assert!(m.contains("at 'content.template.templateData' failed to satisfy constraint: Member must have length less than or equal to 262144"));
        assert!(m.contains("Member must have length greater than or equal to 1"));
    }

    #[test]
    fn uri_templates_match_labels() {
        assert_eq!(
            v2_rules("PUT", "/v2/email/configuration-sets/x/delivery-options").map(|r| r.0),
            Some("PutConfigurationSetDeliveryOptions")
        );
        assert_eq!(v2_rules("GET", "/v2/email/nothing-here").map(|r| r.0), None);
    }

    #[test]
    fn query_parameters_become_the_structure_they_encode() {
        let p = Params::parse(
            b"Destination.ToAddresses.member.1=a&Destination.ToAddresses.member.2=b&Tags.member.1.Name=n",
        );
        assert_eq!(query_tree(&p), json!({"Destination": {"ToAddresses": ["a", "b"]}, "Tags": [{"Name": "n"}]}));
    }
}
