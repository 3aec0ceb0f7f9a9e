//! Each family of SES operations, in process: the real HTTP front door on a loopback socket over
//! a real store, asked by a client whose requests the official `aws-sigv4` signer signed. The
//! Python suite drives the binary with boto3 and aws-cli; these run in `cargo test` alone.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use weir_api::{ApiConfig, AppState};
use weir_submit::Service;
use weir_testkit::{Keys, Reply, v1, v2};

const REGION: &str = "us-east-1";

/// A front door serving in this process, with one account ("acme") whose domain `acme.test` is
/// verified, with no rate limit (each test sends several messages at once); in the sandbox
/// unless `production`.
struct Door {
    base: String,
    keys: Keys,
    svc: Arc<Service>,
    rt: tokio::runtime::Runtime,
    _stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Door {
    fn open(production: bool) -> Door {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (svc, _) = weir_testkit::service::open(dir.path(), "api.test");
        let account = rt.block_on(weir_testkit::service::sender(&svc, "acme", "acme.test", production));
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = AppState {
            svc: svc.clone(),
            cfg: Arc::new(ApiConfig {
                max_skew_secs: 300,
                max_body_bytes: 10 << 20,
                body_timeout: Duration::from_secs(10),
                admin_token: "admin-token".into(),
                v2_daily_quota_code: "LimitExceededException".into(),
            }),
            delivery_status: None,
            body_budget: weir_api::body::BodyBudget::new(64 << 20),
            metrics: Arc::new(weir_metrics::Metrics::new()),
            metrics_text: None,
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        rt.spawn(weir_api::server::serve(listener, state, Default::default(), stopped));
        let keys = Keys {
            akid: account.access_key_id.clone(),
            secret: account.secret.clone(),
            smtp_password: weir_sigv4::smtp_password(&account.secret, REGION),
        };
        Door { base, keys, svc, rt, _stop: stop, _dir: dir }
    }

    fn v1(&self, form: &[(&str, &str)]) -> Reply {
        v1(&self.base, &self.keys, REGION, form)
    }

    fn v2(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        v2(&self.base, &self.keys, REGION, method, path, body)
    }

    /// Recipients of the account in the spool.
    fn spooled(&self) -> usize {
        let f = weir_store::spool::QueueFilter { account: Some("acme".into()), ..Default::default() };
        self.rt.block_on(async { self.svc.queue_rows(&f, 1000).unwrap().len() })
    }
}

fn ok(r: &Reply) -> &Reply {
    assert_eq!(r.status, 200, "{}", r.body);
    r
}

#[test]
fn v1_sending_spools_simple_raw_and_templated_mail_and_refuses_unverified_senders() {
    let d = Door::open(false);
    let r = d.v1(&[
        ("Action", "SendEmail"),
        ("Source", "a@acme.test"),
        ("Destination.ToAddresses.member.1", "success@simulator.amazonses.com"),
        ("Message.Subject.Data", "hi"),
        ("Message.Body.Text.Data", "hello"),
    ]);
    assert!(ok(&r).xml("MessageId").is_some_and(|id| !id.is_empty()), "{}", r.body);
    let raw = "From: a@acme.test\r\nTo: success@simulator.amazonses.com\r\nSubject: raw\r\n\r\nbody\r\n";
    let b64 = base64_encode(raw.as_bytes());
    ok(&d.v1(&[("Action", "SendRawEmail"), ("RawMessage.Data", &b64)]));
    ok(&d.v1(&[
        ("Action", "CreateTemplate"),
        ("Template.TemplateName", "welcome"),
        ("Template.SubjectPart", "Hi {{name}}"),
        ("Template.TextPart", "Hello {{name}}"),
    ]));
    ok(&d.v1(&[
        ("Action", "SendTemplatedEmail"),
        ("Source", "a@acme.test"),
        ("Destination.ToAddresses.member.1", "success@simulator.amazonses.com"),
        ("Template", "welcome"),
        ("TemplateData", r#"{"name":"Ann"}"#),
    ]));
    assert_eq!(d.spooled(), 3);
    let refused = d.v1(&[
        ("Action", "SendEmail"),
        ("Source", "a@other.test"),
        ("Destination.ToAddresses.member.1", "success@simulator.amazonses.com"),
        ("Message.Subject.Data", "hi"),
        ("Message.Body.Text.Data", "hello"),
    ]);
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(refused.xml("Code").as_deref(), Some("MessageRejected"), "{}", refused.body);
    assert_eq!(d.spooled(), 3, "a refused send spools nothing");
}

#[test]
fn v1_identities_are_created_listed_and_deleted() {
    let d = Door::open(false);
    let r = d.v1(&[("Action", "VerifyDomainIdentity"), ("Domain", "new.test")]);
    assert!(ok(&r).xml("VerificationToken").is_some(), "{}", r.body);
    ok(&d.v1(&[("Action", "VerifyEmailAddress"), ("EmailAddress", "me@new.test")]));
    let list = d.v1(&[("Action", "ListIdentities")]);
    for id in ["acme.test", "new.test", "me@new.test"] {
        assert!(ok(&list).body.contains(&format!("<member>{id}</member>")), "{id}: {}", list.body);
    }
    let attrs = d.v1(&[
        ("Action", "GetIdentityVerificationAttributes"),
        ("Identities.member.1", "new.test"),
        ("Identities.member.2", "acme.test"),
    ]);
    assert!(ok(&attrs).body.contains("Pending") && attrs.body.contains("Success"), "{}", attrs.body);
    ok(&d.v1(&[("Action", "DeleteVerifiedEmailAddress"), ("EmailAddress", "me@new.test")]));
    let list = d.v1(&[("Action", "ListIdentities")]);
    assert!(!ok(&list).body.contains("me@new.test"), "{}", list.body);
}

#[test]
fn v1_quota_and_statistics_count_recipients() {
    let d = Door::open(false);
    let q = d.v1(&[("Action", "GetSendQuota")]);
    assert_eq!(ok(&q).xml("SentLast24Hours").as_deref(), Some("0.0"), "{}", q.body);
    assert_eq!(q.xml("Max24HourSend").as_deref(), Some("200.0"), "{}", q.body);
    ok(&d.v1(&[
        ("Action", "SendEmail"),
        ("Source", "a@acme.test"),
        ("Destination.ToAddresses.member.1", "success@simulator.amazonses.com"),
        ("Destination.CcAddresses.member.1", "bounce@simulator.amazonses.com"),
        ("Message.Subject.Data", "hi"),
        ("Message.Body.Text.Data", "hello"),
    ]));
    let q = d.v1(&[("Action", "GetSendQuota")]);
    assert_eq!(ok(&q).xml("SentLast24Hours").as_deref(), Some("2.0"), "per recipient: {}", q.body);
    ok(&d.v1(&[("Action", "GetSendStatistics")]));
}

#[test]
fn v1_templates_render_and_name_missing_attributes() {
    let d = Door::open(false);
    ok(&d.v1(&[
        ("Action", "CreateTemplate"),
        ("Template.TemplateName", "t1"),
        ("Template.SubjectPart", "Hi {{name}}"),
        ("Template.HtmlPart", "<p>{{name}}</p>"),
    ]));
    let got = d.v1(&[("Action", "GetTemplate"), ("TemplateName", "t1")]);
    assert_eq!(ok(&got).xml("SubjectPart").as_deref(), Some("Hi {{name}}"));
    let r = d.v1(&[("Action", "TestRenderTemplate"), ("TemplateName", "t1"), ("TemplateData", r#"{"name":"Bo"}"#)]);
    assert!(ok(&r).body.contains("Hi Bo"), "{}", r.body);
    let r = d.v1(&[("Action", "TestRenderTemplate"), ("TemplateName", "t1"), ("TemplateData", "{}")]);
    assert_eq!(r.xml("Code").as_deref(), Some("MissingRenderingAttribute"), "{}", r.body);
    ok(&d.v1(&[("Action", "DeleteTemplate"), ("TemplateName", "t1")]));
    let gone = d.v1(&[("Action", "GetTemplate"), ("TemplateName", "t1")]);
    assert_eq!(gone.xml("Code").as_deref(), Some("TemplateDoesNotExist"), "{}", gone.body);
}

#[test]
fn v1_configuration_sets_are_created_described_and_paused() {
    let d = Door::open(false);
    ok(&d.v1(&[("Action", "CreateConfigurationSet"), ("ConfigurationSet.Name", "news")]));
    let r = d.v1(&[("Action", "DescribeConfigurationSet"), ("ConfigurationSetName", "news")]);
    assert_eq!(ok(&r).xml("Name").as_deref(), Some("news"), "{}", r.body);
    ok(&d.v1(&[
        ("Action", "UpdateConfigurationSetSendingEnabled"),
        ("ConfigurationSetName", "news"),
        ("Enabled", "false"),
    ]));
    let paused = d.v1(&[
        ("Action", "SendEmail"),
        ("Source", "a@acme.test"),
        ("ConfigurationSetName", "news"),
        ("Destination.ToAddresses.member.1", "success@simulator.amazonses.com"),
        ("Message.Subject.Data", "hi"),
        ("Message.Body.Text.Data", "hello"),
    ]);
    assert_eq!(paused.xml("Code").as_deref(), Some("ConfigurationSetSendingPausedException"), "{}", paused.body);
    ok(&d.v1(&[("Action", "DeleteConfigurationSet"), ("ConfigurationSetName", "news")]));
    let gone = d.v1(&[("Action", "DescribeConfigurationSet"), ("ConfigurationSetName", "news")]);
    assert_eq!(gone.xml("Code").as_deref(), Some("ConfigurationSetDoesNotExist"), "{}", gone.body);
}

#[test]
fn v2_sending_spools_each_content_kind() {
    let d = Door::open(true);
    let simple = json!({"FromEmailAddress": "a@acme.test", "Destination": {"ToAddresses": ["x@anywhere.test"]},
        "Content": {"Simple": {"Subject": {"Data": "hi"}, "Body": {"Text": {"Data": "hello"}}}}});
    let r = d.v2("POST", "/v2/email/outbound-emails", Some(simple));
    assert!(ok(&r).json()["MessageId"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.body);
    let raw = base64_encode(b"From: a@acme.test\r\nTo: y@anywhere.test\r\nSubject: raw\r\n\r\nbody\r\n");
    ok(&d.v2("POST", "/v2/email/outbound-emails", Some(json!({"Content": {"Raw": {"Data": raw}}}))));
    let templ = json!({"FromEmailAddress": "a@acme.test", "Destination": {"ToAddresses": ["z@anywhere.test"]},
        "Content": {"Template": {"TemplateContent": {"Subject": "Hi {{n}}", "Text": "{{n}}"}, "TemplateData": "{\"n\":\"1\"}"}}});
    ok(&d.v2("POST", "/v2/email/outbound-emails", Some(templ)));
    assert_eq!(d.spooled(), 3);
}

#[test]
fn v2_identities_show_their_verification_and_dkim() {
    let d = Door::open(false);
    let r = d.v2("POST", "/v2/email/identities", Some(json!({"EmailIdentity": "fresh.test"})));
    assert_eq!(ok(&r).json()["IdentityType"], "DOMAIN", "{}", r.body);
    assert_eq!(r.json()["DkimAttributes"]["Status"], "PENDING", "{}", r.body);
    let got = d.v2("GET", "/v2/email/identities/acme.test", None);
    assert_eq!(ok(&got).json()["VerificationStatus"], "SUCCESS", "{}", got.body);
    let list = d.v2("GET", "/v2/email/identities", None);
    assert_eq!(ok(&list).json()["EmailIdentities"].as_array().map(Vec::len), Some(2), "{}", list.body);
    ok(&d.v2("DELETE", "/v2/email/identities/fresh.test", None));
    let gone = d.v2("GET", "/v2/email/identities/fresh.test", None);
    assert_eq!(gone.status, 404, "{}", gone.body);
}

#[test]
fn v2_account_shows_the_sandbox_and_can_pause_sending() {
    let d = Door::open(false);
    let a = d.v2("GET", "/v2/email/account", None);
    assert_eq!(ok(&a).json()["ProductionAccessEnabled"], false, "{}", a.body);
    assert_eq!(a.json()["SendQuota"]["Max24HourSend"], 200.0, "{}", a.body);
    ok(&d.v2("PUT", "/v2/email/account/sending", Some(json!({"SendingEnabled": false}))));
    let a = d.v2("GET", "/v2/email/account", None);
    assert_eq!(ok(&a).json()["SendingEnabled"], false, "{}", a.body);
}

#[test]
fn v2_suppressed_addresses_are_kept_listed_and_removed() {
    let d = Door::open(false);
    let put = json!({"EmailAddress": "gone@x.test", "Reason": "BOUNCE"});
    ok(&d.v2("PUT", "/v2/email/suppression/addresses", Some(put)));
    let bad =
        d.v2("PUT", "/v2/email/suppression/addresses", Some(json!({"EmailAddress": "a@x.test", "Reason": "MAYBE"})));
    assert_eq!(bad.status, 400, "{}", bad.body);
    let got = d.v2("GET", "/v2/email/suppression/addresses/gone@x.test", None);
    assert_eq!(ok(&got).json()["SuppressedDestination"]["Reason"], "BOUNCE", "{}", got.body);
    let list = d.v2("GET", "/v2/email/suppression/addresses", None);
    assert_eq!(ok(&list).json()["SuppressedDestinationSummaries"].as_array().map(Vec::len), Some(1));
    ok(&d.v2("DELETE", "/v2/email/suppression/addresses/gone@x.test", None));
    assert_eq!(d.v2("GET", "/v2/email/suppression/addresses/gone@x.test", None).status, 404);
}

#[test]
fn v2_templates_are_stored_rendered_and_deleted() {
    let d = Door::open(false);
    let t = json!({"TemplateName": "w", "TemplateContent": {"Subject": "Hi {{n}}", "Text": "t {{n}}"}});
    ok(&d.v2("POST", "/v2/email/templates", Some(t)));
    let r = d.v2("POST", "/v2/email/templates/w/render", Some(json!({"TemplateData": "{\"n\":\"Kim\"}"})));
    assert!(ok(&r).json()["RenderedTemplate"].as_str().is_some_and(|m| m.contains("Hi Kim")), "{}", r.body);
    let list = d.v2("GET", "/v2/email/templates", None);
    assert_eq!(ok(&list).json()["TemplatesMetadata"].as_array().map(Vec::len), Some(1), "{}", list.body);
    ok(&d.v2("DELETE", "/v2/email/templates/w", None));
    assert_eq!(d.v2("GET", "/v2/email/templates/w", None).status, 404);
}

#[test]
fn v2_configuration_sets_keep_their_options_and_destinations() {
    let d = Door::open(false);
    ok(&d.v2("POST", "/v2/email/configuration-sets", Some(json!({"ConfigurationSetName": "tx"}))));
    let opts = json!({"TlsPolicy": "REQUIRE"});
    ok(&d.v2("PUT", "/v2/email/configuration-sets/tx/delivery-options", Some(opts)));
    let got = d.v2("GET", "/v2/email/configuration-sets/tx", None);
    assert_eq!(ok(&got).json()["DeliveryOptions"]["TlsPolicy"], "REQUIRE", "{}", got.body);
    let dup = d.v2("POST", "/v2/email/configuration-sets", Some(json!({"ConfigurationSetName": "tx"})));
    assert_eq!(dup.status, 400, "{}", dup.body);
    ok(&d.v2("DELETE", "/v2/email/configuration-sets/tx", None));
    assert_eq!(d.v2("GET", "/v2/email/configuration-sets/tx", None).status, 404);
}

#[test]
fn v2_contact_lists_hold_contacts_and_their_topics() {
    let d = Door::open(false);
    let list = json!({"ContactListName": "news", "Topics": [{"TopicName": "weekly", "DisplayName": "Weekly",
        "DefaultSubscriptionStatus": "OPT_IN"}]});
    ok(&d.v2("POST", "/v2/email/contact-lists", Some(list)));
    ok(&d.v2("POST", "/v2/email/contact-lists/news/contacts", Some(json!({"EmailAddress": "c@x.test"}))));
    let c = d.v2("GET", "/v2/email/contact-lists/news/contacts/c@x.test", None);
    assert_eq!(ok(&c).json()["TopicDefaultPreferences"][0]["SubscriptionStatus"], "OPT_IN", "{}", c.body);
    let second = d.v2("POST", "/v2/email/contact-lists", Some(json!({"ContactListName": "other"})));
    assert_eq!(second.status, 400, "one contact list per account, as SES: {}", second.body);
    ok(&d.v2("DELETE", "/v2/email/contact-lists/news", None));
    assert_eq!(d.v2("GET", "/v2/email/contact-lists/news", None).status, 404);
}

#[test]
fn v2_tags_follow_their_resource() {
    let d = Door::open(false);
    ok(&d.v2("POST", "/v2/email/configuration-sets", Some(json!({"ConfigurationSetName": "tagged"}))));
    let arn = "arn:aws:ses:us-east-1:000000000000:configuration-set/tagged";
    let tags = json!({"ResourceArn": arn, "Tags": [{"Key": "team", "Value": "mail"}]});
    ok(&d.v2("POST", "/v2/email/tags", Some(tags)));
    let q = format!("/v2/email/tags?ResourceArn={}", arn.replace(':', "%3A").replace('/', "%2F"));
    let got = d.v2("GET", &q, None);
    assert_eq!(ok(&got).json()["Tags"][0]["Value"], "mail", "{}", got.body);
    let other =
        d.v2("GET", "/v2/email/tags?ResourceArn=arn%3Aaws%3Ases%3Aus-east-1%3A0%3Aconfiguration-set%2Fnone", None);
    assert_eq!(other.status, 404, "{}", other.body);
}

/// Standard base64 (what `RawMessage.Data` and v2's `Raw.Data` carry).
fn base64_encode(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}
