//! An SES client whose requests the official `aws-sigv4` signer signs.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

#[derive(Clone)]
pub struct Keys {
    pub akid: String,
    pub secret: String,
    pub smtp_password: String,
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Text of the first `<tag>…</tag>` in an XML body.
    pub fn xml(&self, tag: &str) -> Option<String> {
        let open = format!("<{tag}>");
        let start = self.body.find(&open)? + open.len();
        let end = self.body[start..].find(&format!("</{tag}>"))? + start;
        Some(self.body[start..end].to_string())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Send a request signed with `keys` for `region` at `time` (None: unsigned).
pub fn request(
    base: &str,
    method: &str,
    path_and_query: &str,
    content_type: Option<&str>,
    body: &[u8],
    sign_as: Option<(&Keys, &str, SystemTime)>,
) -> Reply {
    let url = format!("{base}{path_and_query}");
    let host = base.trim_start_matches("http://").to_string();
    let mut headers: Vec<(String, String)> = vec![("host".into(), host)];
    if let Some(ct) = content_type {
        headers.push(("content-type".into(), ct.into()));
    }
    if let Some((keys, region, time)) = sign_as {
        let identity = Credentials::new(&keys.akid, &keys.secret, None, None, "test").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("ses")
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .expect("params")
            .into();
        let signable = SignableRequest::new(
            method,
            &url,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(body),
        )
        .expect("signable");
        let (instr, _) = sign(signable, &params).expect("sign").into_parts();
        for (k, v) in instr.headers() {
            headers.push((k.to_string(), v.to_string()));
        }
    }
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut req = ureq::http::Request::builder().method(method).uri(&url);
    for (k, v) in &headers {
        if k != "host" {
            req = req.header(k.as_str(), v.as_str());
        }
    }
    let req = req.body(body.to_vec()).expect("request");
    let mut resp = agent.run(req).expect("http");
    let status = resp.status().as_u16();
    let headers =
        resp.headers().iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())).collect();
    let body = resp.body_mut().with_config().limit(64 << 20).read_to_string().expect("body");
    Reply { status, headers, body }
}

/// A v1 Query call to the server at `base`, signed for `region` now.
pub fn v1(base: &str, keys: &Keys, region: &str, form: &[(&str, &str)]) -> Reply {
    let body: String = form_body(form);
    request(
        base,
        "POST",
        "/",
        Some("application/x-www-form-urlencoded; charset=utf-8"),
        body.as_bytes(),
        Some((keys, region, SystemTime::now())),
    )
}

/// A v2 REST call to the server at `base`, signed for `region` now.
pub fn v2(base: &str, keys: &Keys, region: &str, method: &str, path: &str, json: Option<serde_json::Value>) -> Reply {
    let body = json.map(|j| j.to_string()).unwrap_or_default();
    let ct = if body.is_empty() { None } else { Some("application/json") };
    request(base, method, path, ct, body.as_bytes(), Some((keys, region, SystemTime::now())))
}

pub fn form_body(form: &[(&str, &str)]) -> String {
    let mut ser = url_form::Serializer::new();
    for (k, v) in form {
        ser.append_pair(k, v);
    }
    ser.finish()
}

/// Minimal form encoder (space as '+', like botocore).
pub mod url_form {
    #[derive(Default)]
    pub struct Serializer(String);
    impl Serializer {
        pub fn new() -> Self {
            Serializer(String::new())
        }
        pub fn append_pair(&mut self, k: &str, v: &str) {
            if !self.0.is_empty() {
                self.0.push('&');
            }
            self.0.push_str(&enc(k));
            self.0.push('=');
            self.0.push_str(&enc(v));
        }
        pub fn finish(self) -> String {
            self.0
        }
    }
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                b' ' => "+".to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
}

pub fn send_email_form<'a>(from: &'a str, to: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("Action", "SendEmail"),
        ("Version", "2010-12-01"),
        ("Source", from),
        ("Destination.ToAddresses.member.1", to),
        ("Message.Subject.Data", "hi"),
        ("Message.Body.Text.Data", "hello"),
    ]
}
