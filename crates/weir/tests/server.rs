//! End-to-end tests of `weir serve` over real sockets: SES v1 and v2 wire shapes, quota
//! refusals, authentication failures, validation errors, restart and crash durability.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use common::*;
use serde_json::json;

fn production(s: &Server, name: &str, region: &str, max_24h: &str, rate: &str) {
    s.cli(&["account", "quota", name, "--region", region, "--production", "--max-24h", max_24h, "--max-rate", rate]);
}

#[test]
fn v1_send_quota_and_throttling() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let k = s.account("acme");
    s.cli(&["identity", "add", "acme", "--region", "us-east-1", "acme.test", "--verified"]);

    let r = v1(&s, &k, "us-east-1", &[("Action", "GetSendQuota"), ("Version", "2010-12-01")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.starts_with(
            "<GetSendQuotaResponse xmlns=\"http://ses.amazonaws.com/doc/2010-12-01/\"><GetSendQuotaResult>"
        )
    );
    assert_eq!(r.xml("Max24HourSend").as_deref(), Some("200.0"));
    assert_eq!(r.xml("MaxSendRate").as_deref(), Some("1.0"));

    let r = v1(&s, &k, "us-east-1", &send_email_form("a@acme.test", "b@acme.test"));
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.xml("MessageId").unwrap();
    assert!(r.header("x-amzn-RequestId").is_some());

    // Sandbox rate: 1 per second, so an immediate second send is throttled and charged nothing.
    let r = v1(&s, &k, "us-east-1", &send_email_form("a@acme.test", "b@acme.test"));
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.xml("Code").as_deref(), Some("Throttling"));
    assert_eq!(r.xml("Message").as_deref(), Some("Maximum sending rate exceeded."));
    assert_eq!(r.xml("Type").as_deref(), Some("Sender"));
    assert_eq!(r.header("Retry-After"), Some("1"));
    let r = v1(&s, &k, "us-east-1", &[("Action", "GetSendQuota")]);
    assert_eq!(r.xml("SentLast24Hours").as_deref(), Some("1.0"));

    // The message is in the spool with its recipient.
    let spool: serde_json::Value = serde_json::from_str(&s.cli(&["spool", "list", "--json"])).unwrap();
    assert_eq!(spool[0]["message_id"], json!(id));
    assert_eq!(spool[0]["recipients"][0]["address"], json!("b@acme.test"));

    // Another region of the same account has its own, untouched quota.
    s.cli(&["identity", "add", "acme", "--region", "eu-west-1", "acme.test", "--verified"]);
    let r = v1(&s, &k, "eu-west-1", &send_email_form("a@acme.test", "b@acme.test"));
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn v2_shapes_and_daily_quota() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let k = s.account("acme");
    s.cli(&["identity", "add", "acme", "--region", "us-east-1", "acme.test", "--verified"]);
    s.cli(&["account", "quota", "acme", "--region", "us-east-1", "--max-24h", "3", "--max-rate", "100"]);

    let send = |to: Vec<&str>| {
        v2(
            &s,
            &k,
            "us-east-1",
            "POST",
            "/v2/email/outbound-emails",
            Some(json!({
                "FromEmailAddress": "a@acme.test",
                "Destination": {"ToAddresses": to},
                "Content": {"Simple": {"Subject": {"Data": "hi"}, "Body": {"Text": {"Data": "hello"}}}}
            })),
        )
    };
    let r = send(vec!["b@acme.test", "c@acme.test"]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["MessageId"].as_str().unwrap().ends_with("-000000"));
    let r = send(vec!["b@acme.test", "c@acme.test"]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.header("x-amzn-ErrorType"), Some("LimitExceededException"));
    assert_eq!(r.json()["message"], json!("Daily message quota exceeded."));
    assert!(r.header("Retry-After").unwrap().parse::<u64>().unwrap() > 86_000);

    let r = v2(&s, &k, "us-east-1", "GET", "/v2/email/account", None);
    assert_eq!(r.json()["SendQuota"], json!({"Max24HourSend": 3.0, "MaxSendRate": 100.0, "SentLast24Hours": 2.0}));
    assert_eq!(r.json()["ProductionAccessEnabled"], json!(false));

    // Rate refusal in v2 is a 429.
    s.cli(&["account", "quota", "acme", "--region", "us-east-1", "--max-24h", "100", "--max-rate", "1"]);
    // The bucket keeps its debt in time units across a rate change (here 2 × 10 ms).
    std::thread::sleep(Duration::from_millis(50));
    let r = send(vec!["b@acme.test"]);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = send(vec!["b@acme.test"]);
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.header("x-amzn-ErrorType"), Some("TooManyRequestsException"));

    // Identities with an '@' in a path label (double-encoded in the signature).
    let r = v2(&s, &k, "us-east-1", "POST", "/v2/email/identities", Some(json!({"EmailIdentity": "x@y.test"})));
    assert_eq!(r.json()["IdentityType"], json!("EMAIL_ADDRESS"));
    assert_eq!(r.json()["VerifiedForSendingStatus"], json!(false));
    let r = v2(&s, &k, "us-east-1", "GET", "/v2/email/identities/x%40y.test", None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["VerificationStatus"], json!("PENDING"));
    let r = v2(&s, &k, "us-east-1", "GET", "/v2/email/identities/missing%40y.test", None);
    assert_eq!((r.status, r.header("x-amzn-ErrorType")), (404, Some("NotFoundException")));
}

#[test]
fn authentication_failures_per_api_version() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let k = s.account("acme");
    let form = form_body(&[("Action", "GetSendQuota")]);
    let ct = Some("application/x-www-form-urlencoded; charset=utf-8");

    let unsigned = request(&s.base, "POST", "/", ct, form.as_bytes(), None);
    assert_eq!((unsigned.status, unsigned.xml("Code").as_deref()), (403, Some("MissingAuthenticationToken")));
    let unsigned = request(&s.base, "GET", "/v2/email/account", None, b"", None);
    assert_eq!(
        (unsigned.status, unsigned.header("x-amzn-ErrorType")),
        (403, Some("MissingAuthenticationTokenException"))
    );

    let stranger = Keys { akid: "AKIAUNKNOWNKEY000000".into(), ..k.clone() };
    let r = request(&s.base, "POST", "/", ct, form.as_bytes(), Some((&stranger, "us-east-1", SystemTime::now())));
    assert_eq!((r.status, r.xml("Code").as_deref()), (403, Some("InvalidClientTokenId")));
    assert_eq!(r.xml("Message").as_deref(), Some("The security token included in the request is invalid."));
    let r = request(&s.base, "GET", "/v2/email/account", None, b"", Some((&stranger, "us-east-1", SystemTime::now())));
    assert_eq!((r.status, r.header("x-amzn-ErrorType")), (403, Some("UnrecognizedClientException")));

    let wrong = Keys { secret: "wrong-secret".into(), ..k.clone() };
    let r = request(&s.base, "POST", "/", ct, form.as_bytes(), Some((&wrong, "us-east-1", SystemTime::now())));
    assert_eq!((r.status, r.xml("Code").as_deref()), (403, Some("SignatureDoesNotMatch")));
    let r = request(&s.base, "GET", "/v2/email/account", None, b"", Some((&wrong, "us-east-1", SystemTime::now())));
    assert_eq!((r.status, r.header("x-amzn-ErrorType")), (403, Some("InvalidSignatureException")));

    let late = SystemTime::now() - Duration::from_secs(6 * 60);
    let r = request(&s.base, "POST", "/", ct, form.as_bytes(), Some((&k, "us-east-1", late)));
    assert_eq!((r.status, r.xml("Code").as_deref()), (403, Some("SignatureDoesNotMatch")));
    assert!(r.xml("Message").unwrap().starts_with("Signature expired: "), "{}", r.body);
    assert!(r.xml("Message").unwrap().ends_with(" - 5 min.)"), "{}", r.body);
}

#[test]
fn bad_input_gets_specific_errors_never_500() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let k = s.account("acme");
    production(&s, "acme", "us-east-1", "-1", "-1");
    s.cli(&["identity", "add", "acme", "--region", "us-east-1", "acme.test", "--verified"]);
    let code = |r: &Reply| (r.status, r.xml("Code").unwrap_or_default(), r.xml("Message").unwrap_or_default());

    let r = v1(&s, &k, "us-east-1", &[("Action", "Frobnicate"), ("Version", "2010-12-01")]);
    assert_eq!(
        code(&r),
        (400, "InvalidAction".into(), "Could not find operation Frobnicate for version 2010-12-01".into())
    );
    let r = v1(&s, &k, "us-east-1", &[("Action", "SendEmail")]);
    assert_eq!(r.xml("Code").as_deref(), Some("ValidationError"));
    assert!(
        r.xml("Message").unwrap().starts_with("3 validation errors detected: Value null at 'source'"),
        "{}",
        r.body
    );

    let many: Vec<String> = (0..51).map(|i| format!("r{i}@acme.test")).collect();
    let mut form = send_email_form("a@acme.test", "r@acme.test");
    let keys: Vec<String> = (1..=51).map(|i| format!("Destination.BccAddresses.member.{i}")).collect();
    for (key, addr) in keys.iter().zip(&many) {
        form.push((key, addr));
    }
    let r = v1(&s, &k, "us-east-1", &form);
    assert_eq!(code(&r), (400, "InvalidParameterValue".into(), "Recipient count exceeds 50.".into()));

    let mut form = send_email_form("a@acme.test", "b@acme.test");
    form[4] = ("Message.Subject.Data", "hi\r\nBcc: victim@else.test");
    let r = v1(&s, &k, "us-east-1", &form);
    assert_eq!(r.xml("Code").as_deref(), Some("InvalidParameterValue"));
    assert!(r.xml("Message").unwrap().contains("line break"), "{}", r.body);

    let r = v1(&s, &k, "us-east-1", &send_email_form("no-at-sign", "b@acme.test"));
    assert_eq!(code(&r), (400, "InvalidParameterValue".into(), "Missing final '@domain'".into()));

    let b64 = |m: &str| base64::engine::general_purpose::STANDARD.encode(m);
    let raw = b64("To: b@acme.test\r\nSubject: x\r\n\r\nbody\r\n");
    let r = v1(&s, &k, "us-east-1", &[("Action", "SendRawEmail"), ("RawMessage.Data", &raw)]);
    assert_eq!(code(&r), (400, "InvalidParameterValue".into(), "Missing required header 'From'.".into()));
    let r = v1(&s, &k, "us-east-1", &[("Action", "SendRawEmail"), ("RawMessage.Data", "%%%not base64")]);
    assert_eq!(r.xml("Code").as_deref(), Some("InvalidParameterValue"));

    let big = "a".repeat(10 * 1024 * 1024 + 1);
    let r = v1(
        &s,
        &k,
        "us-east-1",
        &[("Action", "SendRawEmail"), ("RawMessage.Data", &b64(&format!("From: a@acme.test\r\n\r\n{big}")))],
    );
    assert_eq!(r.xml("Code").as_deref(), Some("InvalidParameterValue"));
    assert!(
        r.xml("Message").unwrap().starts_with("Message length is more than 10485760 bytes long"),
        "{}",
        &r.body[..200.min(r.body.len())]
    );

    let r = request(
        &s.base,
        "POST",
        "/v2/email/outbound-emails",
        Some("application/json"),
        b"{not json",
        Some((&k, "us-east-1", SystemTime::now())),
    );
    assert_eq!((r.status, r.header("x-amzn-ErrorType")), (400, Some("BadRequestException")));
    let r =
        v2(&s, &k, "us-east-1", "POST", "/v2/email/outbound-emails", Some(json!({"FromEmailAddress": "a@acme.test"})));
    assert_eq!((r.status, r.header("x-amzn-ErrorType")), (400, Some("BadRequestException")));
    assert!(r.json()["message"].as_str().unwrap().contains("'content'"));
    let r = v2(
        &s,
        &k,
        "us-east-1",
        "PUT",
        "/v2/email/suppression/addresses",
        Some(json!({"EmailAddress": "x@y.test", "Reason": "SPAM"})),
    );
    assert_eq!((r.status, r.header("x-amzn-ErrorType")), (400, Some("BadRequestException")));
}

#[test]
fn restart_keeps_quota_counters() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let k = s.account("acme");
    production(&s, "acme", "us-east-1", "1000", "100");
    s.cli(&["identity", "add", "acme", "--region", "us-east-1", "acme.test", "--verified"]);
    for i in 0..3 {
        let to = format!("r{i}@anywhere.test");
        let r = v1(&s, &k, "us-east-1", &send_email_form("a@acme.test", &to));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    s.stop();
    let s = Server::start(dir.path());
    let r = v1(&s, &k, "us-east-1", &[("Action", "GetSendQuota")]);
    assert_eq!(r.xml("SentLast24Hours").as_deref(), Some("3.0"), "{}", r.body);
    assert_eq!(r.xml("Max24HourSend").as_deref(), Some("1000.0"));
}

#[test]
fn kill_9_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let k = s.account("acme");
    production(&s, "acme", "us-east-1", "-1", "-1");
    s.cli(&["identity", "add", "acme", "--region", "us-east-1", "acme.test", "--verified"]);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let base = s.base.clone();
    let mut threads = Vec::new();
    for t in 0..8 {
        let (acked, k, base) = (acked.clone(), k.clone(), base.clone());
        threads.push(std::thread::spawn(move || {
            for i in 0..10_000 {
                let to = format!("t{t}-{i}@anywhere.test");
                let body = form_body(&send_email_form("a@acme.test", &to));
                let r = std::panic::catch_unwind(|| {
                    request(
                        &base,
                        "POST",
                        "/",
                        Some("application/x-www-form-urlencoded"),
                        body.as_bytes(),
                        Some((&k, "us-east-1", SystemTime::now())),
                    )
                });
                match r {
                    Ok(r) if r.status == 200 => acked.lock().unwrap().push(r.xml("MessageId").unwrap()),
                    _ => return,
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(1500));
    s.kill9();
    for t in threads {
        let _ = t.join();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "too few sends before the kill: {}", acked.len());
    let s = Server::start(dir.path());
    let spool: serde_json::Value = serde_json::from_str(&s.cli(&["spool", "list", "--json"])).unwrap();
    let stored: HashSet<String> =
        spool.as_array().unwrap().iter().map(|m| m["message_id"].as_str().unwrap().to_string()).collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(lost.is_empty(), "{} of {} acknowledged messages lost, e.g. {:?}", lost.len(), acked.len(), lost.first());
    // The quota ledger agrees with the spool.
    let r = v1(&s, &k, "us-east-1", &[("Action", "GetSendQuota")]);
    assert_eq!(r.xml("SentLast24Hours"), Some(format!("{}.0", stored.len())));
}
