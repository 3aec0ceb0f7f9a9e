//! Every reply of the corpus (`replies.txt`: real receivers' replies with their sources) gets
//! the category and scope written beside it, and greylisting replies the delay they state.

use weir_classify::classify::{Action, classify};
use weir_classify::provider::Provider;
use weir_classify::reply::Reply;

struct Case {
    source: String,
    provider: Provider,
    category: String,
    scope: String,
    delay: Option<u32>,
    lines: Vec<String>,
}

fn provider(name: &str) -> Provider {
    match name {
        "google" => Provider::Google,
        "microsoft" => Provider::Microsoft,
        "yahoo" => Provider::Yahoo,
        "apple" => Provider::Apple,
        "other" => Provider::Other,
        other => panic!("unknown provider {other}"),
    }
}

fn cases() -> Vec<Case> {
    let text = include_str!("replies.txt");
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut case = Case {
            source: String::new(),
            provider: Provider::Other,
            category: String::new(),
            scope: String::new(),
            delay: None,
            lines: Vec::new(),
        };
        for line in block.lines().filter(|l| !l.starts_with('#')) {
            let (key, value) = line.split_once(": ").unwrap_or_else(|| panic!("bad line {line:?}"));
            match key {
                "source" => case.source = value.to_string(),
                "provider" => case.provider = provider(value),
                "expect" => {
                    let (c, s) = value.split_once(' ').expect("category and scope");
                    (case.category, case.scope) = (c.to_string(), s.to_string());
                }
                "delay" => case.delay = Some(value.parse().expect("seconds")),
                "reply" => case.lines.push(value.to_string()),
                other => panic!("unknown key {other}"),
            }
        }
        if !case.lines.is_empty() {
            assert!(
                !case.source.is_empty() && !case.category.is_empty(),
                "{:?} lacks a source or expectation",
                case.lines
            );
            out.push(case);
        }
    }
    out
}

#[test]
fn every_reply_of_the_corpus_gets_its_category_and_scope() {
    let cases = cases();
    assert!(cases.len() >= 30, "corpus of {} replies", cases.len());
    let mut wrong = Vec::new();
    for c in &cases {
        let reply = Reply::parse(&c.lines.join("\n")).unwrap_or_else(|| panic!("unparsable {:?}", c.lines));
        let d = classify(&reply, c.provider);
        if (d.category.as_str(), d.scope.as_str()) != (c.category.as_str(), c.scope.as_str()) {
            wrong.push(format!(
                "{reply} ({}): got {} {} by rule {}, expected {} {}",
                c.source,
                d.category.as_str(),
                d.scope.as_str(),
                d.rule,
                c.category,
                c.scope
            ));
        }
        if let Some(delay) = c.delay {
            assert_eq!(d.action, Action::Greylisted { retry_after_s: Some(delay) }, "{reply}");
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn blocks_and_domain_authentication_are_never_per_recipient_bounces() {
    for c in cases().iter().filter(|c| c.category == "ip_blocked" || c.scope == "domain_auth") {
        let reply = Reply::parse(&c.lines.join("\n")).expect("reply");
        let action = classify(&reply, c.provider).action;
        assert!(!matches!(action, Action::Bounce { .. }), "{reply} bounced: {action:?}");
    }
}
