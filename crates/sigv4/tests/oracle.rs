//! Property tests with the official AWS signer (`aws-sigv4`) as oracle: whatever it signs
//! verifies, and a change to any signed part fails.

use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use proptest::prelude::*;
use weir_sigv4::{DEFAULT_MAX_SKEW_SECS, RequestParts, SigError, verify};

const AKID: &str = "AKIAWEIRTESTKEY00001";
const SECRET: &str = "s3cr3t/KEY+with/slashes0123456789abcdefgh";

#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    region: String,
    now: u64,
}

fn sign_with_oracle(r: &Req) -> Vec<(String, String)> {
    let identity = Credentials::new(AKID, SECRET, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&r.region)
        .name("ses")
        .time(UNIX_EPOCH + Duration::from_secs(r.now))
        .settings(SigningSettings::default())
        .build()
        .expect("params")
        .into();
    let uri = if r.query.is_empty() {
        format!("http://127.0.0.1:8787{}", r.path)
    } else {
        format!("http://127.0.0.1:8787{}?{}", r.path, r.query)
    };
    let mut headers = r.headers.clone();
    headers.push(("host".into(), "127.0.0.1:8787".into()));
    let signable = SignableRequest::new(
        &r.method,
        &uri,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(&r.body),
    )
    .expect("signable");
    let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
    for (k, v) in instructions.headers() {
        headers.push((k.to_string(), v.to_string()));
    }
    headers
}

fn run(r: &Req, headers: &[(String, String)]) -> Result<(), SigError> {
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let parts = RequestParts { method: &r.method, raw_path: &r.path, raw_query: &r.query, headers: &h, body: &r.body };
    verify(&parts, r.now + 1, DEFAULT_MAX_SKEW_SECS, |k| (k == AKID).then(|| SECRET.to_string())).map(|_| ())
}

fn segment() -> impl Strategy<Value = String> {
    // Encoded path segments as a client would send them: %40 for '@', %20 for spaces, etc.
    prop::collection::vec(
        prop_oneof![Just("a"), Just("Z9"), Just("%40"), Just("%20"), Just("-_.~"), Just("%2B"), Just("x%25y")],
        1..4,
    )
    .prop_map(|v| v.concat())
}

fn arb_req() -> impl Strategy<Value = Req> {
    (
        prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("DELETE")],
        prop::collection::vec(segment(), 0..4),
        prop::collection::vec(("[A-Za-z]{1,6}", "[A-Za-z0-9%:]{0,8}"), 0..4),
        prop::collection::vec(("x-weir-[a-z]{1,5}", "[ -~]{0,12}"), 0..3),
        prop::collection::vec(any::<u8>(), 0..200),
        prop_oneof![Just("us-east-1"), Just("eu-west-1"), Just("ap-southeast-2")],
        1_600_000_000u64..2_000_000_000,
    )
        .prop_map(|(m, segs, q, headers, body, region, now)| Req {
            method: m.to_string(),
            path: format!("/{}", segs.join("/")),
            query: q
                .iter()
                .map(|(k, v)| format!("{k}={}", v.replace('%', "%25").replace(':', "%3A")))
                .collect::<Vec<_>>()
                .join("&"),
            headers: headers
                .into_iter()
                .map(|(k, v)| (k, v.trim().to_string()))
                .filter(|(_, v)| !v.is_empty())
                .collect(),
            body,
            region: region.to_string(),
            now,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn oracle_signed_requests_verify(r in arb_req()) {
        let headers = sign_with_oracle(&r);
        prop_assert_eq!(run(&r, &headers), Ok(()));
    }

    #[test]
    fn mutations_fail(r in arb_req(), which in 0usize..5, byte in 0usize..1000) {
        let headers = sign_with_oracle(&r);
        let mut m = r.clone();
        let mut h = headers.clone();
        match which {
            0 => m.method = format!("{}X", m.method),
            1 => m.path = format!("{}b", m.path),
            2 => m.query = if m.query.is_empty() { "a=b".into() } else { format!("{}0", m.query) },
            3 => { if m.body.is_empty() { m.body.push(b'x') } else { let i = byte % m.body.len(); m.body[i] ^= 0x20 } }
            _ => {
                for (k, v) in h.iter_mut() {
                    if k.eq_ignore_ascii_case("authorization") {
                        let i = v.len() - 1 - byte % 64;
                        let c = if v.as_bytes()[i] == b'0' { "1" } else { "0" };
                        v.replace_range(i..=i, c);
                    }
                }
            }
        }
        prop_assert_eq!(run(&m, &h), Err(SigError::Mismatch));
    }
}
