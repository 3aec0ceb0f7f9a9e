//! Arbitrary requests into the SES front door as an authenticated caller: the first byte picks
//! the API (v1 Query body, or one of the v2 routes), the rest is the body. Every request gets an
//! SES-shaped answer (never a panic, never a 5xx but the storage 503), with a real store underneath.

#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method};
use libfuzzer_sys::fuzz_target;
use weir_api::auth::Caller;
use weir_api::{ApiConfig, AppState, RawRequest};
use weir_store::model::Account;

struct World {
    rt: tokio::runtime::Runtime,
    st: AppState,
    account: Arc<Account>,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let (svc, _) = weir_testkit::service::open(dir.path(), "fuzz.test");
        let account = Arc::new(rt.block_on(weir_testkit::service::sender(&svc, "fuzz", "a.test", true)));
        let st = AppState {
            svc,
            cfg: Arc::new(ApiConfig {
                max_skew_secs: 300,
                max_body_bytes: 1 << 20,
                body_timeout: std::time::Duration::from_secs(10),
                admin_token: "x".repeat(64),
                v2_daily_quota_code: "LimitExceededException".into(),
            }),
            delivery_status: None,
            body_budget: weir_api::body::BodyBudget::new(1 << 24),
            metrics: Arc::new(weir_metrics::Metrics::new()),
            metrics_text: None,
        };
        World { rt, st, account, _dir: dir }
    })
}

/// v2 routes (method, path); the fuzzer's first byte picks one, or v1 for the rest.
const V2: &[(&str, &str)] = &[
    ("POST", "/v2/email/outbound-emails"),
    ("GET", "/v2/email/account"),
    ("PUT", "/v2/email/account/sending"),
    ("POST", "/v2/email/identities"),
    ("GET", "/v2/email/identities"),
    ("GET", "/v2/email/identities/a.test"),
    ("DELETE", "/v2/email/identities/x%40a.test"),
    ("PUT", "/v2/email/suppression/addresses"),
    ("GET", "/v2/email/suppression/addresses"),
    ("GET", "/v2/email/suppression/addresses/x%40a.test"),
    ("DELETE", "/v2/email/suppression/addresses/x%40a.test"),
    ("PUT", "/v2/email/account/suppression"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let w = world();
    let caller = Caller { account: w.account.clone(), region: "us-east-1".into() };
    let (method, path, query) = match V2.get(pick as usize) {
        Some((m, p)) => {
            // Query strings ride after a NUL in the body.
            let (q, b) = match body.iter().position(|b| *b == 0) {
                Some(i) => (String::from_utf8_lossy(&body[..i]).into_owned(), &body[i + 1..]),
                None => (String::new(), body),
            };
            return run(w, &caller, Method::from_bytes(m.as_bytes()).expect("method"), p, q, b, true);
        }
        None => (Method::POST, "/", String::new()),
    };
    run(w, &caller, method, path, query, body, false);
});

fn run(w: &World, caller: &Caller, method: Method, path: &str, query: String, body: &[u8], v2: bool) {
    let raw = RawRequest {
        method,
        path: path.to_string(),
        query,
        headers: HeaderMap::new(),
        body: Bytes::copy_from_slice(body),
        request_id: "fuzz".into(),
    };
    let resp = w.rt.block_on(async {
        if v2 { weir_api::v2::handle(&w.st, caller, &raw).await } else { weir_api::v1::handle(&w.st, caller, &raw).await }
    });
    let status = resp.status();
    assert!(!status.is_server_error() || status.as_u16() == 503, "server error {status} for {raw:?}", raw = raw.path);
}
