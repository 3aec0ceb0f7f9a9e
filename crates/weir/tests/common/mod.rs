//! Test harness: the real `weir serve` binary on a loopback port, and a SigV4-signing HTTP client
//! built on the official `aws-sigv4` signer (an implementation we did not write).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

pub const BIN: &str = env!("CARGO_BIN_EXE_weir");

pub struct Server {
    pub dir: PathBuf,
    pub base: String,
    pub smtp: String,
    pub smtps: String,
    pub child: Child,
}

impl Server {
    /// Start `weir serve` on a free port with `dir` as its data dir.
    pub fn start(dir: &Path) -> Server {
        Self::start_with(dir, &["--no-delivery"])
    }

    /// Start with extra `weir serve` arguments (e.g. `--config FILE`).
    pub fn start_with(dir: &Path, extra: &[&str]) -> Server {
        let _ = std::fs::remove_file(dir.join("server.json"));
        let child = Command::new(BIN)
            .args(["serve", "--http", "127.0.0.1:0", "--smtp", "127.0.0.1:0", "--smtps", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(extra)
            .env("WEIR_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn weir");
        // Owned by `Server` at once, so that its `Drop` reaps the process on any panic below.
        let mut server =
            Server { dir: dir.to_path_buf(), base: String::new(), smtp: String::new(), smtps: String::new(), child };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let info = std::fs::read_to_string(dir.join("server.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
            if let Some(v) = info {
                let field = |k: &str| v[k].as_str().unwrap_or("").to_string();
                server.base = field("http");
                server.smtp = field("smtp");
                server.smtps = field("smtps");
                return server;
            }
            assert!(Instant::now() < deadline, "weir did not start within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Run a `weir` CLI command against this server; returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(BIN).args(args).arg("--data-dir").arg(&self.dir).output().expect("run weir");
        assert!(out.status.success(), "weir {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf8")
    }

    /// Create an account and return its keys.
    pub fn account(&self, name: &str) -> Keys {
        let v: serde_json::Value =
            serde_json::from_str(&self.cli(&["account", "create", name, "--json"])).expect("json");
        Keys {
            akid: v["access_key_id"].as_str().expect("akid").to_string(),
            secret: v["secret_access_key"].as_str().expect("secret").to_string(),
            smtp_password: v["smtp_password"].as_str().expect("smtp password").to_string(),
        }
    }

    /// SIGTERM and wait.
    pub fn stop(mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }

    /// SIGKILL and wait.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

/// A v1 Query call signed for `region` now.
pub fn v1(s: &Server, keys: &Keys, region: &str, form: &[(&str, &str)]) -> Reply {
    let body: String = form_body(form);
    request(
        &s.base,
        "POST",
        "/",
        Some("application/x-www-form-urlencoded; charset=utf-8"),
        body.as_bytes(),
        Some((keys, region, SystemTime::now())),
    )
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

/// A v2 REST call signed for `region` now.
pub fn v2(s: &Server, keys: &Keys, region: &str, method: &str, path: &str, json: Option<serde_json::Value>) -> Reply {
    let body = json.map(|j| j.to_string()).unwrap_or_default();
    let ct = if body.is_empty() { None } else { Some("application/json") };
    request(&s.base, method, path, ct, body.as_bytes(), Some((keys, region, SystemTime::now())))
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
