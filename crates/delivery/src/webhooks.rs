//! Events over HTTP(S). Two kinds of endpoint share one sender:
//! - webhooks (`[delivery] webhooks`): every event, as SES's event JSON;
//! - topics (`[[events.topics]]`): an SNS topic ARN that configuration sets' event destinations
//!   name, mapped to an HTTP endpoint with a payload format (SES JSON, an SNS-style envelope or
//!   a generic webhook shape) and a secret that signs each request (HMAC-SHA256).
//!
//! Delivery never waits for them: events are queued per endpoint, posted in order, retried with
//! backoff (250 ms doubling, at most 30 s apart) until they are taken or the endpoint's retry
//! budget is spent; when a queue is full the copy is dropped and counted. `events.jsonl` still
//! has every event.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;
use weir_model::Senders;
use weir_store::events::Listener;

/// Counters of the senders.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Events POSTed with a 2xx answer.
    pub delivered: AtomicU64,
    /// Events given up after every retry.
    pub failed: AtomicU64,
    /// Events dropped because a queue was full.
    pub dropped: AtomicU64,
    /// Events queued or being posted now (the backlog).
    pub pending: AtomicU64,
}

/// The body an endpoint takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// SES's event JSON, as written to `events.jsonl`.
    Ses,
    /// The event inside an SNS `Notification` envelope (unsigned: SNS's certificate chain is
    /// Amazon's), as an SNS HTTP subscription receives it.
    Sns,
    /// A flat JSON object with the fields bounce webhooks usually carry.
    Generic,
}

/// One HTTP(S) endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The URL (`http://` or `https://`).
    pub url: String,
    /// The topic ARN it stands for (topics), or empty (webhooks).
    pub topic_arn: String,
    /// Payload format.
    pub format: Format,
    /// HMAC-SHA256 key; when set every request carries `X-Weir-Signature`.
    pub secret: Option<String>,
    /// Extra trusted CA certificates (PEM) for an HTTPS endpoint, besides the public roots.
    pub ca_file: Option<PathBuf>,
    /// Most attempts per event.
    pub attempts: u32,
    /// Give an event up this long after its first attempt.
    pub retry_for: Duration,
}

/// Why an endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The CA file could not be read or parsed.
    #[error("cannot load CA certificates from {0}: {1}")]
    CaFile(String, String),
    /// TLS setup failed.
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

type HttpClient = Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Full<Bytes>>;

fn client(ca_file: Option<&PathBuf>) -> Result<HttpClient, EndpointError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        use rustls_pki_types::pem::PemObject;
        let shown = path.display().to_string();
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| EndpointError::CaFile(shown.clone(), e.to_string()))?;
        for c in certs {
            let c = c.map_err(|e| EndpointError::CaFile(shown.clone(), e.to_string()))?;
            roots.add(c).map_err(|e| EndpointError::CaFile(shown.clone(), e.to_string()))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| EndpointError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// A queued copy of an event.
struct Queued {
    event: Value,
    /// Stays the same across retries, so receivers can drop duplicates.
    id: String,
}

/// A started endpoint: its queue.
struct Sender {
    tx: mpsc::Sender<Queued>,
}

impl Sender {
    fn start(e: Endpoint, queue: usize, stats: Arc<WebhookStats>) -> Result<Sender, EndpointError> {
        let client = client(e.ca_file.as_ref())?;
        let (tx, rx) = mpsc::channel::<Queued>(queue.max(1));
        tokio::spawn(run(e, client, rx, stats));
        Ok(Sender { tx })
    }

    fn offer(&self, event: &Value, stats: &WebhookStats) {
        let q = Queued { event: event.clone(), id: uuid::Uuid::new_v4().to_string() };
        if self.tx.try_send(q).is_ok() {
            stats.pending.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Start one sender per webhook URL (every event, SES JSON); returns the event-log listener.
pub fn start(
    urls: Vec<String>,
    queue: usize,
    attempts: u32,
    stats: Arc<WebhookStats>,
) -> Result<Listener, EndpointError> {
    let mut senders = Vec::new();
    for url in urls {
        let e = Endpoint {
            url,
            topic_arn: String::new(),
            format: Format::Ses,
            secret: None,
            ca_file: None,
            attempts: attempts.max(1),
            retry_for: Duration::from_secs(24 * 3600),
        };
        senders.push(Sender::start(e, queue, stats.clone())?);
    }
    Ok(Box::new(move |event: &Value| {
        for s in &senders {
            s.offer(event, &stats);
        }
    }))
}

/// Start one sender per topic; events go to the topics of the enabled event destinations of
/// their configuration set whose matching types include them. Returns the event-log listener.
pub fn start_topics(
    topics: Vec<Endpoint>,
    accounts: Arc<dyn Senders>,
    queue: usize,
    stats: Arc<WebhookStats>,
) -> Result<Listener, EndpointError> {
    let mut senders = HashMap::new();
    for t in topics {
        let arn = t.topic_arn.clone();
        senders.insert(arn, Sender::start(t, queue, stats.clone())?);
    }
    Ok(Box::new(move |event: &Value| {
        let mail = &event["mail"];
        let (Some(set), Some(kind), Some(account), Some(region)) = (
            mail["tags"]["ses:configuration-set"][0].as_str(),
            event["eventType"].as_str().and_then(v2_event_type),
            mail["sendingAccountId"].as_str(),
            mail["region"].as_str(),
        ) else {
            return;
        };
        for arn in accounts.event_topics_for(account, region, set, kind) {
            if let Some(s) = senders.get(&arn) {
                s.offer(event, &stats);
            }
        }
    }))
}

/// SES v2's name of an event type (`MatchingEventTypes`), from the event's `eventType`.
pub fn v2_event_type(event_type: &str) -> Option<&'static str> {
    Some(match event_type {
        "Send" => "SEND",
        "Reject" => "REJECT",
        "Bounce" => "BOUNCE",
        "Complaint" => "COMPLAINT",
        "Delivery" => "DELIVERY",
        "DeliveryDelay" => "DELIVERY_DELAY",
        "Rendering Failure" => "RENDERING_FAILURE",
        "Subscription" => "SUBSCRIPTION",
        "Open" => "OPEN",
        "Click" => "CLICK",
        _ => return None,
    })
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The request body and its content type for `format`.
pub fn payload(format: Format, topic_arn: &str, event: &Value, id: &str, now_ms: i64) -> (String, &'static str) {
    match format {
        Format::Ses => (event.to_string(), "application/json"),
        Format::Sns => {
            let env = json!({
                "Type": "Notification",
                "MessageId": id,
                "TopicArn": topic_arn,
                "Message": event.to_string(),
                "Timestamp": iso(now_ms),
                "SignatureVersion": "1",
                "Signature": "",
                "SigningCertURL": "",
                "UnsubscribeURL": "",
            });
            (env.to_string(), "text/plain; charset=UTF-8")
        }
        Format::Generic => (generic(event, id).to_string(), "application/json"),
    }
}

/// The flat shape: `event`, `message_id`, `recipients`, and what the event type adds.
fn generic(event: &Value, id: &str) -> Value {
    let mail = &event["mail"];
    let kind = event["eventType"].as_str().unwrap_or_default();
    let mut out = json!({
        "id": id,
        "event": v2_event_type(kind).map(str::to_ascii_lowercase).unwrap_or_else(|| kind.to_ascii_lowercase()),
        "message_id": mail["messageId"],
        "from": mail["source"],
        "account": mail["sendingAccountId"],
        "region": mail["region"],
        "configuration_set": mail["tags"]["ses:configuration-set"][0],
        "sent_at": mail["timestamp"],
    });
    let emails = |list: &Value| -> Vec<Value> {
        list.as_array().map(|l| l.iter().map(|r| r["emailAddress"].clone()).collect()).unwrap_or_default()
    };
    match kind {
        "Send" => out["recipients"] = event["send"]["destination"].clone(),
        "Delivery" => {
            let d = &event["delivery"];
            out["recipients"] = d["recipients"].clone();
            out["timestamp"] = d["timestamp"].clone();
            out["smtp_response"] = d["smtpResponse"].clone();
        }
        "Bounce" => {
            let b = &event["bounce"];
            out["recipients"] = json!(emails(&b["bouncedRecipients"]));
            out["timestamp"] = b["timestamp"].clone();
            out["bounce_type"] = b["bounceType"].clone();
            out["bounce_subtype"] = b["bounceSubType"].clone();
            out["status"] = b["bouncedRecipients"][0]["status"].clone();
            out["diagnostic"] = b["bouncedRecipients"][0]["diagnosticCode"].clone();
        }
        "DeliveryDelay" => {
            let d = &event["deliveryDelay"];
            out["recipients"] = json!(emails(&d["delayedRecipients"]));
            out["timestamp"] = d["timestamp"].clone();
            out["delay_type"] = d["delayType"].clone();
            out["diagnostic"] = d["delayedRecipients"][0]["diagnosticCode"].clone();
        }
        "Complaint" => {
            let c = &event["complaint"];
            out["recipients"] = json!(emails(&c["complainedRecipients"]));
            out["timestamp"] = c["timestamp"].clone();
            out["feedback_type"] = c["complaintFeedbackType"].clone();
        }
        "Reject" => out["reason"] = event["reject"]["reason"].clone(),
        "Rendering Failure" => {
            out["reason"] = event["failure"]["errorMessage"].clone();
            out["template"] = event["failure"]["templateName"].clone();
        }
        _ => {}
    }
    out
}

/// `X-Weir-Signature`: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &str, unix_s: i64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{unix_s}.").as_bytes());
    mac.update(body.as_bytes());
    format!("t={unix_s},v1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn run(e: Endpoint, client: HttpClient, mut rx: mpsc::Receiver<Queued>, stats: Arc<WebhookStats>) {
    let url = e.url.as_str();
    while let Some(q) = rx.recv().await {
        let first = Instant::now();
        let mut ok = false;
        let mut attempt = 0u32;
        loop {
            if attempt > 0 {
                if attempt >= e.attempts || first.elapsed() >= e.retry_for {
                    break;
                }
                let wait = Duration::from_millis(250u64 << (attempt - 1).min(7)).min(Duration::from_secs(30));
                tokio::time::sleep(wait).await;
            }
            attempt += 1;
            let now_ms = chrono::Utc::now().timestamp_millis();
            let (body, content_type) = payload(e.format, &e.topic_arn, &q.event, &q.id, now_ms);
            let mut req = hyper::Request::post(url)
                .header("content-type", content_type)
                .header("user-agent", "weir-webhook")
                .header("x-weir-event-id", q.id.as_str());
            if e.format == Format::Sns {
                req = req
                    .header("x-amz-sns-message-type", "Notification")
                    .header("x-amz-sns-message-id", q.id.as_str())
                    .header("x-amz-sns-topic-arn", e.topic_arn.as_str());
            }
            if let Some(secret) = &e.secret {
                req = req.header("x-weir-signature", signature(secret, now_ms / 1000, &body));
            }
            let Ok(req) = req.body(Full::new(Bytes::from(body))) else { break };
            match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
                Ok(Ok(resp)) if resp.status().is_success() => {
                    ok = true;
                    break;
                }
                Ok(Ok(resp)) => tracing::debug!(%url, status = %resp.status(), "an event endpoint refused an event"),
                Ok(Err(e)) => tracing::debug!(%url, error = %e, "an event endpoint is unreachable"),
                Err(_) => tracing::debug!(%url, "an event endpoint timed out"),
            }
        }
        stats.pending.fetch_sub(1, Ordering::Relaxed);
        if ok {
            stats.delivered.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%url, attempts = attempt, "gave up on an event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounce() -> Value {
        json!({
            "eventType": "Bounce",
            "mail": {"messageId": "m1", "source": "a@x.test", "sendingAccountId": "acct", "region": "us-east-1",
                     "timestamp": "2026-01-01T00:00:00.000Z", "tags": {"ses:configuration-set": ["cs"]}},
            "bounce": {"bounceType": "Permanent", "bounceSubType": "General", "timestamp": "2026-01-01T00:00:01.000Z",
                       "bouncedRecipients": [{"emailAddress": "b@y.test", "status": "5.1.1", "diagnosticCode": "smtp; 550 no"}]},
        })
    }

    #[test]
    fn sns_envelope_carries_the_event_as_a_string() {
        let (body, ct) = payload(Format::Sns, "arn:aws:sns:us-east-1:1:t", &bounce(), "id-1", 0);
        let v: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(ct, "text/plain; charset=UTF-8");
        assert_eq!(v["Type"], "Notification");
        assert_eq!(v["TopicArn"], "arn:aws:sns:us-east-1:1:t");
        assert_eq!(v["MessageId"], "id-1");
        let inner: Value = serde_json::from_str(v["Message"].as_str().expect("string")).expect("inner json");
        assert_eq!(inner, bounce());
    }

    #[test]
    fn generic_bounce_is_flat() {
        let (body, _) = payload(Format::Generic, "", &bounce(), "id-2", 0);
        let v: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["event"], "bounce");
        assert_eq!(v["recipients"], json!(["b@y.test"]));
        assert_eq!(v["bounce_type"], "Permanent");
        assert_eq!(v["diagnostic"], "smtp; 550 no");
        assert_eq!(v["configuration_set"], "cs");
    }

    #[test]
    fn signature_is_hmac_sha256_of_time_and_body() {
        // python3 -c "import hmac,hashlib;print(hmac.new(b'key',b'1700000000.{}',hashlib.sha256).hexdigest())"
        assert_eq!(
            signature("key", 1_700_000_000, "{}"),
            "t=1700000000,v1=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }

    #[test]
    fn every_ses_event_type_has_a_v2_name() {
        for t in
            ["Send", "Reject", "Bounce", "Complaint", "Delivery", "DeliveryDelay", "Rendering Failure", "Subscription"]
        {
            assert!(v2_event_type(t).is_some(), "{t}");
        }
        assert_eq!(v2_event_type("LaneChange"), None);
    }
}
