//! weir's Prometheus metrics, in one explicit registry (no globals).
//!
//! - Counters fed as things happen: SES events by type, account and region (from the event log,
//!   so every front door and the delivery engine count alike), HTTP requests by API flavour and
//!   status with a latency histogram.
//! - Gauges set at scrape time from what the spool and the delivery engine hold: recipients
//!   waiting by state and lane with the oldest age, and each lane's connections, safe rate,
//!   pause and first-deferral / final-delivery ratios.
//!
//! Names follow Prometheus conventions: `weir_…_total` for counters, units in names.

use std::fmt::Write as _;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

/// Labels of an SES event count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// `Send`, `Delivery`, `Bounce`, `Complaint`, `Reject`, `DeliveryDelay`.
    pub event: String,
    /// Account name.
    pub account: String,
    /// Region.
    pub region: String,
}

/// Labels of an HTTP request count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `v1`, `v2`, `admin`.
    pub api: String,
    /// HTTP status code.
    pub status: String,
    /// SES error code of a refusal (`Throttling`, `MessageRejected`, …); empty on success.
    pub code: String,
}

/// Labels of the API flavour alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// `v1`, `v2`, `admin`.
    pub api: String,
}

/// Labels of a lane's timeline change.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LaneChangeLabels {
    /// Lane key.
    pub lane: String,
    /// Provider.
    pub provider: String,
    /// `pause`, `resume`, `slow_down`, `fewer_connections`, `step_up`, `incident`, …
    pub kind: String,
}

/// Labels of a webhook outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `delivered`, `failed` (given up after every retry) or `dropped` (queue full).
    pub outcome: String,
}

/// Labels of an SMTP listener.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    /// `starttls` or `implicit_tls`.
    pub listener: String,
}

/// Labels of a spool gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SpoolLabels {
    /// Recipient state.
    pub state: String,
    /// Lane of the last attempt (`none` before the first).
    pub lane: String,
}

/// Labels of a lane gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LaneLabels {
    /// Lane key.
    pub lane: String,
    /// Provider.
    pub provider: String,
}

/// One lane as the delivery engine reports it at scrape time.
#[derive(Clone, Debug, Default)]
pub struct LaneSnapshot {
    /// Lane key.
    pub lane: String,
    /// Provider.
    pub provider: String,
    /// Connections the lane may use now.
    pub connections_allowed: i64,
    /// Messages per minute the lane sends at now.
    pub safe_rate_per_minute: f64,
    /// Paused (after a 4.7.28, a Retry-After).
    pub paused: bool,
    /// First attempts deferred / first attempts.
    pub first_deferral_ratio: f64,
    /// Delivered / finished.
    pub final_delivery_ratio: f64,
    /// First attempts made (since the spool was created).
    pub first_attempts: u64,
    /// First attempts deferred.
    pub first_attempt_deferrals: u64,
    /// Attempts by (outcome, reply class).
    pub replies: Vec<(String, String, u64)>,
}

/// Labels of delivery attempts by outcome and reply class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    /// Lane key.
    pub lane: String,
    /// Provider.
    pub provider: String,
    /// `delivered`, `deferred`, `bounced`, `expired`.
    pub outcome: String,
    /// Reply class (`rate_limited`, `unusual_rate`, `mailbox_full`, …).
    pub class: String,
}

/// One (account, region)'s quota at scrape time.
#[derive(Clone, Debug, Default)]
pub struct QuotaSnapshot {
    /// Account name.
    pub account: String,
    /// Region.
    pub region: String,
    /// Recipients accepted in the last 24 hours.
    pub sent_last_24h: f64,
    /// `Max24HourSend` (-1: unlimited).
    pub max_24h: f64,
    /// `MaxSendRate` per second (-1: unlimited).
    pub max_rate: f64,
    /// 0 healthy, 1 under review (PROBATION), 2 paused (SHUTDOWN).
    pub enforcement: i64,
    /// Quota refusals since start by reason (`daily_quota`, `max_send_rate`, `sending_paused`).
    pub refusals: Vec<(String, u64)>,
}

/// Labels of a quota refusal count.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// Account name.
    pub account: String,
    /// Region.
    pub region: String,
    /// `daily_quota`, `max_send_rate`, `sending_paused`.
    pub reason: String,
}

/// Labels of a cluster node.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    /// The node's name in the cluster.
    pub node: String,
}

/// Labels of an (account, region).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccountLabels {
    /// Account name.
    pub account: String,
    /// Region.
    pub region: String,
}

/// One row of the spool summary at scrape time.
#[derive(Clone, Debug, Default)]
pub struct SpoolSnapshot {
    /// State.
    pub state: String,
    /// Lane (`None`: not attempted yet).
    pub lane: Option<String>,
    /// Recipients.
    pub recipients: i64,
    /// Age of the oldest, seconds.
    pub oldest_age_seconds: f64,
}

/// The registry and its families.
pub struct Metrics {
    registry: Registry,
    events: Family<EventLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<ApiLabels, Histogram>,
    spool_recipients: Family<SpoolLabels, Gauge>,
    spool_oldest: Family<SpoolLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    lane_connections: Family<LaneLabels, Gauge>,
    lane_rate: Family<LaneLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    lane_paused: Family<LaneLabels, Gauge>,
    lane_first_deferral: Family<LaneLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    lane_final_delivery: Family<LaneLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    lane_first_attempts: Family<LaneLabels, Counter>,
    lane_first_deferrals: Family<LaneLabels, Counter>,
    attempts: Family<AttemptLabels, Counter>,
    webhook_backlog: Gauge,
    smtp_sessions: Family<ListenerLabels, Counter>,
    smtp_auth_failures: Counter,
    lane_changes: Family<LaneChangeLabels, Counter>,
    webhooks: Family<OutcomeLabels, Gauge>,
    quota_sent: Family<AccountLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    quota_max_24h: Family<AccountLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    quota_max_rate: Family<AccountLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    enforcement: Family<AccountLabels, Gauge>,
    refusals: Family<RefusalLabels, Counter>,
    cluster_redis_up: Family<NodeLabels, Gauge>,
    cluster_open: Family<NodeLabels, Gauge>,
    cluster_outbox: Family<NodeLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Register `metric` under `name` with its `help` text, and keep a handle to it.
fn reg<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// Every family, registered.
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("weir");
        Metrics {
            lane_changes: reg(
                &mut r,
                "lane_changes",
                "Lane timeline changes (pauses, slow-downs, fewer connections, steps up, incidents)",
                Family::<LaneChangeLabels, Counter>::default(),
            ),
            webhooks: reg(
                &mut r,
                "webhook_events",
                "Webhook events by outcome, since start",
                Family::<OutcomeLabels, Gauge>::default(),
            ),
            quota_sent: reg(
                &mut r,
                "quota_sent_last_24h_recipients",
                "Recipients accepted in the last 24 hours, by account and region",
                Family::default(),
            ),
            quota_max_24h: reg(
                &mut r,
                "quota_max_24h_recipients",
                "Max24HourSend by account and region (-1 unlimited)",
                Family::default(),
            ),
            quota_max_rate: reg(
                &mut r,
                "quota_max_send_rate_per_second",
                "MaxSendRate by account and region (-1 unlimited)",
                Family::default(),
            ),
            enforcement: reg(
                &mut r,
                "reputation_enforcement",
                "Enforcement status: 0 HEALTHY, 1 PROBATION, 2 SHUTDOWN",
                Family::<AccountLabels, Gauge>::default(),
            ),
            refusals: reg(
                &mut r,
                "quota_refusals",
                "Sends refused by the quota, by account, region and reason (daily_quota, max_send_rate, sending_paused, unavailable: cluster mode without Redis)",
                Family::<RefusalLabels, Counter>::default(),
            ),
            cluster_redis_up: reg(
                &mut r,
                "cluster_redis_up",
                "Cluster mode: 1 while Redis answers this node",
                Family::<NodeLabels, Gauge>::default(),
            ),
            cluster_open: reg(
                &mut r,
                "cluster_admitting",
                "Cluster mode: 1 while this node decides sends (the shared counters are open in its epoch)",
                Family::<NodeLabels, Gauge>::default(),
            ),
            cluster_outbox: reg(
                &mut r,
                "cluster_outbox_changes",
                "Cluster mode: catalog changes made on this node waiting for Redis to be shared",
                Family::<NodeLabels, Gauge>::default(),
            ),
            smtp_sessions: reg(
                &mut r,
                "smtp_sessions",
                "SMTP submission sessions accepted, by listener",
                Family::<ListenerLabels, Counter>::default(),
            ),
            smtp_auth_failures: reg(&mut r, "smtp_auth_failures", "SMTP AUTH attempts refused", Counter::default()),
            events: reg(
                &mut r,
                "ses_events",
                "SES events by type (Send, Delivery, Bounce, Complaint, Reject, DeliveryDelay), account and region",
                Family::<EventLabels, Counter>::default(),
            ),
            requests: reg(
                &mut r,
                "http_requests",
                "HTTP requests answered, by API, status and SES error code (quota refusals: Throttling, …)",
                Family::<RequestLabels, Counter>::default(),
            ),
            latency: reg(
                &mut r,
                "http_request_duration_seconds",
                "Time to answer an HTTP request",
                Family::<ApiLabels, Histogram>::new_with_constructor(|| {
                    Histogram::new(exponential_buckets(0.000_25, 2.0, 14))
                }),
            ),
            spool_recipients: reg(
                &mut r,
                "spool_recipients",
                "Recipients waiting in the spool, by state and lane",
                Family::<SpoolLabels, Gauge>::default(),
            ),
            spool_oldest: reg(
                &mut r,
                "spool_oldest_age_seconds",
                "Age of the oldest waiting message, by state and lane",
                Family::default(),
            ),
            lane_connections: reg(
                &mut r,
                "lane_connections_allowed",
                "Connections a lane may use now",
                Family::<LaneLabels, Gauge>::default(),
            ),
            lane_rate: reg(
                &mut r,
                "lane_safe_rate_per_minute",
                "Messages per minute a lane sends at now",
                Family::default(),
            ),
            lane_paused: reg(
                &mut r,
                "lane_paused",
                "1 while a lane is paused (4.7.28, Retry-After)",
                Family::<LaneLabels, Gauge>::default(),
            ),
            lane_first_deferral: reg(
                &mut r,
                "lane_first_deferral_ratio",
                "First attempts deferred / first attempts, since the spool was created",
                Family::default(),
            ),
            lane_final_delivery: reg(
                &mut r,
                "lane_final_delivery_ratio",
                "Recipients delivered / recipients finished, since the spool was created",
                Family::default(),
            ),
            lane_first_attempts: reg(
                &mut r,
                "lane_first_attempts",
                "First delivery attempts made (kept in the spool: survives restarts)",
                Family::<LaneLabels, Counter>::default(),
            ),
            lane_first_deferrals: reg(
                &mut r,
                "lane_first_attempt_deferrals",
                "First delivery attempts deferred (kept in the spool: survives restarts)",
                Family::<LaneLabels, Counter>::default(),
            ),
            attempts: reg(
                &mut r,
                "delivery_attempts",
                "Delivery attempts by lane, outcome and reply class (kept in the spool: survives restarts)",
                Family::<AttemptLabels, Counter>::default(),
            ),
            webhook_backlog: reg(
                &mut r,
                "webhook_backlog_events",
                "Webhook events waiting to be posted",
                Gauge::default(),
            ),
            registry: r,
        }
    }

    /// An SES event was emitted.
    pub fn event(&self, event: &str, account: &str, region: &str) {
        let l = EventLabels { event: event.into(), account: account.into(), region: region.into() };
        self.events.get_or_create(&l).inc();
    }

    /// A lane's timeline changed.
    pub fn lane_change(&self, lane: &str, provider: &str, kind: &str) {
        let l = LaneChangeLabels { lane: lane.into(), provider: provider.into(), kind: kind.into() };
        self.lane_changes.get_or_create(&l).inc();
    }

    /// Webhook outcomes so far and events waiting (set at scrape time).
    pub fn webhooks(&self, delivered: u64, failed: u64, dropped: u64, backlog: u64) {
        self.webhook_backlog.set(backlog as i64);
        for (outcome, n) in [("delivered", delivered), ("failed", failed), ("dropped", dropped)] {
            self.webhooks.get_or_create(&OutcomeLabels { outcome: outcome.into() }).set(n as i64);
        }
    }

    /// An SMTP session began on a listener.
    pub fn smtp_session(&self, implicit_tls: bool) {
        let listener = if implicit_tls { "implicit_tls" } else { "starttls" };
        self.smtp_sessions.get_or_create(&ListenerLabels { listener: listener.into() }).inc();
    }

    /// An SMTP AUTH was refused.
    pub fn smtp_auth_failure(&self) {
        self.smtp_auth_failures.inc();
    }

    /// An HTTP request was answered.
    pub fn request(&self, api: &str, status: u16, code: &str, seconds: f64) {
        let l = RequestLabels { api: api.into(), status: status.to_string(), code: code.into() };
        self.requests.get_or_create(&l).inc();
        self.latency.get_or_create(&ApiLabels { api: api.into() }).observe(seconds);
    }

    /// Cluster mode: this node's view of the cluster, for the next exposition.
    pub fn set_cluster(&self, node: &str, redis_up: bool, admitting: bool, outbox: usize) {
        let l = NodeLabels { node: node.to_string() };
        self.cluster_redis_up.get_or_create(&l).set(i64::from(redis_up));
        self.cluster_open.get_or_create(&l).set(i64::from(admitting));
        self.cluster_outbox.get_or_create(&l).set(outbox as i64);
    }

    /// The text exposition, with the scrape-time gauges set from `spool` and `lanes`.
    pub fn render(&self, spool: &[SpoolSnapshot], lanes: &[LaneSnapshot], quotas: &[QuotaSnapshot]) -> String {
        for f in [&self.quota_sent, &self.quota_max_24h, &self.quota_max_rate] {
            f.clear();
        }
        self.enforcement.clear();
        for q in quotas {
            let l = AccountLabels { account: q.account.clone(), region: q.region.clone() };
            self.quota_sent.get_or_create(&l).set(q.sent_last_24h);
            self.quota_max_24h.get_or_create(&l).set(q.max_24h);
            self.quota_max_rate.get_or_create(&l).set(q.max_rate);
            self.enforcement.get_or_create(&l).set(q.enforcement);
            for (reason, n) in &q.refusals {
                let l = RefusalLabels { account: q.account.clone(), region: q.region.clone(), reason: reason.clone() };
                catch_up(&self.refusals.get_or_create(&l), *n);
            }
        }
        self.spool_recipients.clear();
        self.spool_oldest.clear();
        for r in spool {
            let l = SpoolLabels { state: r.state.clone(), lane: r.lane.clone().unwrap_or_else(|| "none".into()) };
            self.spool_recipients.get_or_create(&l).set(r.recipients);
            self.spool_oldest.get_or_create(&l).set(r.oldest_age_seconds);
        }
        for f in [&self.lane_connections, &self.lane_paused] {
            f.clear();
        }
        for f in [&self.lane_rate, &self.lane_first_deferral, &self.lane_final_delivery] {
            f.clear();
        }
        for s in lanes {
            let l = LaneLabels { lane: s.lane.clone(), provider: s.provider.clone() };
            self.lane_connections.get_or_create(&l).set(s.connections_allowed);
            self.lane_rate.get_or_create(&l).set(s.safe_rate_per_minute);
            self.lane_paused.get_or_create(&l).set(i64::from(s.paused));
            self.lane_first_deferral.get_or_create(&l).set(s.first_deferral_ratio);
            self.lane_final_delivery.get_or_create(&l).set(s.final_delivery_ratio);
            catch_up(&self.lane_first_attempts.get_or_create(&l), s.first_attempts);
            catch_up(&self.lane_first_deferrals.get_or_create(&l), s.first_attempt_deferrals);
            for (outcome, class, n) in &s.replies {
                let l = AttemptLabels {
                    lane: s.lane.clone(),
                    provider: s.provider.clone(),
                    outcome: outcome.clone(),
                    class: class.clone(),
                };
                catch_up(&self.attempts.get_or_create(&l), *n);
            }
        }
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            let _ = writeln!(out, "# encoding failed");
        }
        out
    }
}

/// Bring a counter up to a total kept elsewhere (the spool): counters only go up.
fn catch_up(c: &Counter, total: u64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_scrape_time_gauges_render_as_prometheus_text() {
        let m = Metrics::new();
        m.event("Send", "acme", "us-east-1");
        m.event("Send", "acme", "us-east-1");
        m.request("v2", 200, "", 0.003);
        let spool = [SpoolSnapshot { state: "queued".into(), lane: None, recipients: 7, oldest_age_seconds: 12.5 }];
        let quotas = [QuotaSnapshot {
            account: "acme".into(),
            region: "us-east-1".into(),
            sent_last_24h: 3.0,
            max_24h: 200.0,
            max_rate: 1.0,
            enforcement: 0,
            refusals: vec![("max_send_rate".into(), 4)],
        }];
        let text = m.render(&spool, &[], &quotas);
        assert!(text.contains(r#"weir_quota_sent_last_24h_recipients{account="acme",region="us-east-1"} 3"#), "{text}");
        assert!(text.contains(r#"weir_ses_events_total{event="Send",account="acme",region="us-east-1"} 2"#), "{text}");
        assert!(text.contains(r#"weir_http_requests_total{api="v2",status="200",code=""} 1"#), "{text}");
        assert!(text.contains(r#"weir_spool_recipients{state="queued",lane="none"} 7"#), "{text}");
        let refused = r#"weir_quota_refusals_total{account="acme",region="us-east-1",reason="max_send_rate"} 4"#;
        assert!(text.contains(refused), "{text}");
        m.lane_change("gmail", "google", "pause");
        let text = m.render(&spool, &[], &quotas);
        assert!(text.contains(r#"weir_lane_changes_total{lane="gmail",provider="google",kind="pause"} 1"#), "{text}");
        let lane = LaneSnapshot {
            lane: "gmail".into(),
            provider: "google".into(),
            first_attempts: 5,
            replies: vec![("deferred".into(), "unusual_rate".into(), 3)],
            ..Default::default()
        };
        m.render(&spool, std::slice::from_ref(&lane), &quotas);
        let text = m.render(&spool, &[lane], &quotas);
        let deferred =
            r#"weir_delivery_attempts_total{lane="gmail",provider="google",outcome="deferred",class="unusual_rate"} 3"#;
        assert!(text.contains(deferred), "{text}");
        assert!(text.contains(r#"weir_lane_first_attempts_total{lane="gmail",provider="google"} 5"#), "{text}");
        // A gauge set at scrape time disappears when its row does.
        let text = m.render(&[], &[], &[]);
        assert!(!text.contains("weir_spool_recipients{"), "{text}");
    }
}
