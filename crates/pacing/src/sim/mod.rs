//! The provider simulator: modelled providers with hidden acceptance limits and a reputation,
//! driven in virtual time (one-second steps) by three senders — weir's [`Controller`], a
//! fixed-rate sender and a Postfix-like static-concurrency sender. The senders see only the
//! replies, never a provider's hidden parameters.

mod provider;
mod sender;

use serde::{Deserialize, Serialize};

pub use provider::ProviderModel;
pub use sender::{Strategy, run_lane};

use crate::controller::PacingConfig;

/// A scenario file (`weir simulate SCENARIO.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Name in the report.
    pub name: String,
    /// Messages one connection carries per second.
    #[serde(default = "default_per_conn")]
    pub per_connection_rate: f64,
    /// Give up after this much virtual time.
    #[serde(default = "default_hours")]
    pub max_hours: f64,
    /// Seed of the pseudo-random choices (invalid recipients, jitter).
    #[serde(default)]
    pub seed: u64,
    /// weir's lane settings (its normal rate and connections, warm-up start).
    pub weir: PacingConfig,
    /// The baselines.
    pub baselines: Baselines,
    /// The providers (each is an independent lane).
    #[serde(rename = "provider")]
    pub providers: Vec<ProviderSpec>,
}

fn default_per_conn() -> f64 {
    5.0
}

fn default_hours() -> f64 {
    48.0
}

/// Baseline senders.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baselines {
    /// Fixed-rate sender: messages per minute.
    pub fixed_rate_per_min: f64,
    /// Fixed-rate sender: connections.
    pub fixed_connections: u32,
    /// Postfix-like sender: static destination concurrency.
    pub postfix_connections: u32,
}

/// One modelled provider and the mail for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    /// Name (`gmail`, `yahoo`, …).
    pub name: String,
    /// Messages to deliver (one recipient each).
    pub messages: u64,
    /// Share of the messages that are transactional (the rest is bulk).
    #[serde(default)]
    pub transactional_fraction: f64,
    /// Hidden: messages per minute accepted at full reputation.
    pub limit_per_min: f64,
    /// Hidden: concurrent connections accepted.
    pub max_connections: u32,
    /// Hidden: share of recipients that do not exist (5.1.1).
    #[serde(default)]
    pub invalid_fraction: f64,
    /// Hidden: how the provider escalates when pushed: `4.7.28`, `ts04` or `none`.
    #[serde(default = "default_escalation")]
    pub escalation: String,
    /// Hidden: deferrals within 5 minutes that trigger an escalation.
    #[serde(default = "default_escalation_deferrals")]
    pub escalation_deferrals: u32,
    /// Hidden: length of an escalation, minutes.
    #[serde(default = "default_escalation_minutes")]
    pub escalation_minutes: f64,
    /// Hidden: messages per recipient per hour (0 = no limit).
    #[serde(default)]
    pub per_recipient_per_hour: u32,
    /// Distinct recipients (0 = every message has its own).
    #[serde(default)]
    pub distinct_recipients: u64,
    /// Hidden warm-up of a new sending IP: acceptance starts at this many per minute (0 = warm).
    #[serde(default)]
    pub warmup_start_per_min: f64,
    /// Hidden warm-up growth per 10 clean minutes.
    #[serde(default = "default_growth")]
    pub warmup_growth_per_10min: f64,
}

fn default_escalation() -> String {
    "none".into()
}
fn default_escalation_deferrals() -> u32 {
    200
}
fn default_escalation_minutes() -> f64 {
    15.0
}
fn default_growth() -> f64 {
    1.5
}

/// Figures of one sender on one provider.
#[derive(Debug, Clone, Serialize)]
pub struct LaneReport {
    /// Provider.
    pub provider: String,
    /// Sender (`weir`, `fixed-rate`, `postfix-like`).
    pub sender: String,
    /// Minutes until every message was delivered, bounced or expired (or the time limit).
    pub drain_minutes: f64,
    /// Minutes the hidden limits allow at best.
    pub best_minutes: f64,
    /// drain / best.
    pub drain_ratio: f64,
    /// First-attempt deferrals / first attempts, counting first attempts after minute 5.
    pub first_deferral_rate_after_5min: f64,
    /// Delivered / valid recipients.
    pub final_delivery_rate: f64,
    /// Most connections used at once.
    pub max_connections_used: u32,
    /// Delivery attempts made.
    pub attempts: u64,
    /// Minutes until the last transactional message was delivered.
    pub transactional_drain_minutes: f64,
    /// Whether everything was final before the time limit.
    pub drained: bool,
    /// weir only: the incident timeline (pauses, resumes, slow-downs, steps).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<crate::controller::TimelineEntry>,
}

/// Run every provider of the scenario with every sender.
pub fn run(s: &Scenario) -> Vec<LaneReport> {
    let mut out = Vec::new();
    for (i, p) in s.providers.iter().enumerate() {
        let seed = s.seed.wrapping_add(i as u64 * 7919);
        for strategy in [
            Strategy::Weir(s.weir),
            Strategy::Fixed {
                rate_per_min: s.baselines.fixed_rate_per_min,
                connections: s.baselines.fixed_connections,
            },
            Strategy::Postfix { connections: s.baselines.postfix_connections },
        ] {
            out.push(run_lane(s, p, strategy, seed));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Vec<(&'static str, &'static str)> {
        vec![
            ("warmup", include_str!("../../../../scenarios/warmup-new-ip.toml")),
            ("gmail", include_str!("../../../../scenarios/gmail-4728-storm.toml")),
            ("yahoo", include_str!("../../../../scenarios/yahoo-ts04.toml")),
            ("mixed", include_str!("../../../../scenarios/mixed-campaign.toml")),
        ]
    }

    /// Every shipped scenario parses and runs (scaled down here; `weir simulate` runs them
    /// whole); weir delivers every valid recipient and drains no later than either baseline.
    #[test]
    fn shipped_scenarios_run_and_weir_delivers() {
        for (name, text) in shipped() {
            let mut s: Scenario = toml::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            for p in &mut s.providers {
                p.messages /= 10;
            }
            let reports = run(&s);
            for w in reports.iter().filter(|r| r.sender == "weir") {
                assert!(w.drained, "{name}/{}: not drained", w.provider);
                assert!(w.final_delivery_rate >= 0.99, "{name}/{}: {}", w.provider, w.final_delivery_rate);
                for b in reports.iter().filter(|r| r.provider == w.provider && r.sender != "weir") {
                    assert!(w.drain_minutes <= b.drain_minutes, "{name}/{}: weir slower than {}", w.provider, b.sender);
                }
            }
        }
    }

    #[test]
    fn the_same_scenario_gives_the_same_figures() {
        let mut s: Scenario = toml::from_str(shipped()[2].1).expect("scenario");
        s.providers[0].messages /= 20;
        let a = serde_json::to_string(&run(&s)).expect("json");
        let b = serde_json::to_string(&run(&s)).expect("json");
        assert_eq!(a, b);
    }
}
