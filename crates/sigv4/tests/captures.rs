//! Golden tests: every aws-cli / boto3 request captured in `data/sigv4-captures.log` verifies,
//! and the same request with its body, path or date changed does not.

use weir_sigv4::{DEFAULT_MAX_SKEW_SECS, RequestParts, SigError, time, verify};

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const AKID: &str = "AKIAIOSFODNN7EXAMPLE";

struct Captured {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn captures() -> Vec<Captured> {
    let log = include_str!("data/sigv4-captures.log");
    let mut out = Vec::new();
    for block in log.split("REQUEST ####\n").skip(1) {
        // Some captures use CRLF line ends, some LF.
        let crlf = block.find("\r\n\r\n").map(|i| (i, 4));
        let lf = block.find("\n\n").map(|i| (i, 2));
        let (at, sep) = [crlf, lf].into_iter().flatten().min().expect("head/body separator");
        let (head, rest) = (&block[..at], &block[at + sep..]);
        let mut lines = head.lines();
        let request_line = lines.next().expect("request line").trim_end_matches('\r');
        let mut it = request_line.split(' ');
        let method = it.next().expect("method").to_string();
        let target = it.next().expect("target").to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.trim_end_matches('\r').split_once(": ").map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().expect("length"))
            .unwrap_or(0);
        out.push(Captured { method, target, headers, body: rest.as_bytes()[..len].to_vec() });
    }
    out
}

fn check(c: &Captured, method: &str, target: &str, body: &[u8], now_delta: i64) -> Result<String, SigError> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let date = headers.iter().find(|(k, _)| *k == "X-Amz-Date").map(|(_, v)| *v).expect("date");
    let now = (time::parse_amz_date(date).expect("date parses") as i64 + now_delta) as u64;
    let req = RequestParts { method, raw_path: path, raw_query: query, headers: &headers, body };
    verify(&req, now, DEFAULT_MAX_SKEW_SECS, |k| (k == AKID).then(|| SECRET.to_string())).map(|v| v.region)
}

#[test]
fn every_captured_request_verifies() {
    let all = captures();
    assert!(all.len() >= 30, "expected the 30 captured requests, found {}", all.len());
    for c in &all {
        let region = check(c, &c.method, &c.target, &c.body, 2)
            .unwrap_or_else(|e| panic!("{} {} failed: {e:?}", c.method, c.target));
        assert!(region == "us-east-1" || region == "eu-west-1");
    }
}

#[test]
fn any_change_to_a_captured_request_fails() {
    for c in captures() {
        if !c.body.is_empty() {
            let mut body = c.body.clone();
            body[0] ^= 1;
            assert_eq!(check(&c, &c.method, &c.target, &body, 0), Err(SigError::Mismatch), "{}", c.target);
        }
        let other = if c.method == "GET" { "HEAD" } else { "GET" };
        assert_eq!(check(&c, other, &c.target, &c.body, 0), Err(SigError::Mismatch));
        let changed = format!("{}x", c.target);
        assert_eq!(check(&c, &c.method, &changed, &c.body, 0), Err(SigError::Mismatch));
        // Six minutes late: SES's five-minute window rejects it with the "Signature expired" text.
        match check(&c, &c.method, &c.target, &c.body, 360) {
            Err(SigError::Rejected(msg)) => {
                assert!(msg.starts_with("Signature expired: "), "{msg}")
            }
            other => panic!("expected expiry, got {other:?}"),
        }
    }
}

#[test]
fn v2_identity_path_needs_double_encoding() {
    let c = captures().into_iter().find(|c| c.target == "/v2/email/identities/missing%40example.com").expect("capture");
    assert!(check(&c, "GET", &c.target, &c.body, 0).is_ok());
    // Verifying over the decoded path (the single-encoding mistake) must not pass.
    assert_eq!(check(&c, "GET", "/v2/email/identities/missing@example.com", &c.body, 0), Err(SigError::Mismatch));
}
