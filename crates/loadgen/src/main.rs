//! `weir-loadgen`: N concurrent clients sending SigV4-signed SES v1 `SendEmail` requests for a
//! fixed time, each request signed by the official `aws-sigv4` signer (as an SDK would). Prints
//! one JSON line with throughput and latency percentiles. Used by `benches/http_send.sh` against
//! weir and moto_server in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Options.
#[derive(Parser, Clone)]
struct Args {
    /// Base URL, e.g. http://127.0.0.1:8787.
    #[arg(long)]
    endpoint: String,
    /// Access key id.
    #[arg(long)]
    access_key: String,
    /// Secret access key.
    #[arg(long)]
    secret: String,
    /// Region of the credential scope.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Source address.
    #[arg(long, default_value = "sender@bench.test")]
    from: String,
    /// Recipient address.
    #[arg(long, default_value = "rcpt@bench.test")]
    to: String,
    /// Send VerifyEmailIdentity for --from first (moto needs it).
    #[arg(long)]
    verify_first: bool,
    /// Label printed in the result.
    #[arg(long, default_value = "")]
    label: String,
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn signed(a: &Args, host: &str, body: &str) -> anyhow::Result<hyper::Request<Full<Bytes>>> {
    let url = format!("{}/", a.endpoint);
    let mut headers = vec![
        ("host".to_string(), host.to_string()),
        ("content-type".to_string(), "application/x-www-form-urlencoded; charset=utf-8".to_string()),
    ];
    let identity = Credentials::new(&a.access_key, &a.secret, None, None, "loadgen").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&a.region)
        .name("ses")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()?
        .into();
    let signable = SignableRequest::new(
        "POST",
        &url,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body.as_bytes()),
    )?;
    let (instr, _) = sign(signable, &params)?.into_parts();
    for (k, v) in instr.headers() {
        headers.push((k.to_string(), v.to_string()));
    }
    let mut b = hyper::Request::builder().method("POST").uri(&url);
    for (k, v) in &headers {
        b = b.header(k.as_str(), v.as_str());
    }
    Ok(b.body(Full::new(Bytes::from(body.to_string())))?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let host = a.endpoint.trim_start_matches("http://").trim_end_matches('/').to_string();
    let client: Client<_, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(a.concurrency).build_http();
    if a.verify_first {
        let body = format!("Action=VerifyEmailIdentity&Version=2010-12-01&EmailAddress={}", enc(&a.from));
        let resp = client.request(signed(&a, &host, &body)?).await.context("verify request")?;
        anyhow::ensure!(resp.status().is_success(), "VerifyEmailIdentity failed: {}", resp.status());
    }
    let body = Arc::new(format!(
        "Action=SendEmail&Version=2010-12-01&Source={}&Destination.ToAddresses.member.1={}&Message.Subject.Data=bench&Message.Body.Text.Data={}",
        enc(&a.from),
        enc(&a.to),
        enc(&"x".repeat(512))
    ));
    let deadline = Instant::now() + Duration::from_secs_f64(a.duration);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency {
        let (client, a, host, body) = (client.clone(), a.clone(), host.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors, mut lat) = (0u64, 0u64, Vec::<f64>::new());
            let mut first_error: Option<String> = None;
            while Instant::now() < deadline {
                let t = Instant::now();
                let req = match signed(&a, &host, &body) {
                    Ok(r) => r,
                    Err(e) => return Err(e),
                };
                match client.request(req).await {
                    Ok(resp) => {
                        let status = resp.status();
                        let bytes = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        if status.is_success() && bytes.windows(9).any(|w| w == b"MessageId") {
                            ok += 1;
                            lat.push(t.elapsed().as_secs_f64() * 1000.0);
                        } else {
                            errors += 1;
                            first_error.get_or_insert_with(|| format!("{status}: {}", String::from_utf8_lossy(&bytes)));
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            Ok((ok, errors, lat, first_error))
        }));
    }
    let (mut ok, mut errors, mut lat, mut first_error) = (0u64, 0u64, Vec::new(), None);
    for t in tasks {
        let (o, e, l, f) = t.await??;
        ok += o;
        errors += e;
        lat.extend(l);
        first_error = first_error.or(f);
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_by(|x, y| x.total_cmp(y));
    let pct = |p: f64| {
        if lat.is_empty() { 0.0 } else { lat[((lat.len() - 1) as f64 * p) as usize] }
    };
    println!(
        "{}",
        serde_json::json!({
            "label": a.label, "endpoint": a.endpoint, "concurrency": a.concurrency, "seconds": elapsed,
            "accepted": ok, "errors": errors, "per_second": ok as f64 / elapsed,
            "p50_ms": pct(0.5), "p99_ms": pct(0.99), "first_error": first_error,
        })
    );
    Ok(())
}
