//! Event webhooks: every event is POSTed as JSON to each configured URL, retried with backoff.
//! Delivery never waits for them: events are queued, and when a queue is full the webhook copy
//! is dropped (and counted) — `events.jsonl` still has every event.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::sync::mpsc;
use weir_store::events::Listener;

/// Counters of the webhook senders.
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

/// Start one sender per URL (`http://` only); returns the listener for the event log.
pub fn start(urls: Vec<String>, queue: usize, attempts: u32, stats: Arc<WebhookStats>) -> Listener {
    let mut senders = Vec::new();
    for url in urls {
        let (tx, rx) = mpsc::channel::<Value>(queue.max(1));
        tokio::spawn(run(url, rx, attempts.max(1), stats.clone()));
        senders.push(tx);
    }
    Box::new(move |event: &Value| {
        for tx in &senders {
            if tx.try_send(event.clone()).is_ok() {
                stats.pending.fetch_add(1, Ordering::Relaxed);
            } else {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

async fn run(url: String, mut rx: mpsc::Receiver<Value>, attempts: u32, stats: Arc<WebhookStats>) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    while let Some(event) = rx.recv().await {
        let body = Bytes::from(event.to_string());
        let mut ok = false;
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(250 << attempt.min(8))).await;
            }
            let req = hyper::Request::post(url.as_str())
                .header("content-type", "application/json")
                .header("user-agent", "weir-webhook")
                .body(Full::new(body.clone()));
            let Ok(req) = req else { break };
            match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
                Ok(Ok(resp)) if resp.status().is_success() => {
                    ok = true;
                    break;
                }
                Ok(Ok(resp)) => tracing::debug!(%url, status = %resp.status(), "webhook refused an event"),
                Ok(Err(e)) => tracing::debug!(%url, error = %e, "webhook unreachable"),
                Err(_) => tracing::debug!(%url, "webhook timed out"),
            }
        }
        stats.pending.fetch_sub(1, Ordering::Relaxed);
        if ok {
            stats.delivered.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%url, "webhook gave up on an event after {attempts} attempts");
        }
    }
}
