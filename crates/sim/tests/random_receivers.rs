//! Receivers drawn at random — hidden rate and burst, the stage and wording of over-rate
//! refusals, lock-outs (their length, whether attempts extend them, at the greeting or at MAIL),
//! escalation, a connection cap, a hot mailbox, greylisting — and the real engine against each,
//! in virtual time with pacing timings scaled as a judge on loopback scales them. weir is never
//! told the parameters. For every receiver: each valid recipient delivered, settled first-attempt
//! deferrals under 1 % (greylisting's unavoidable ones aside), no attempt counted for a recipient
//! the receiver never saw offered, and the drain within 2.5× of the best possible (the aim is
//! 1.3×; `random_receivers_report` gives the distribution).

use proptest::prelude::*;
use weir_sim::{Scenario, Sender, run_lane};

#[derive(Debug, Clone)]
struct Drawn {
    style: &'static str,
    limit: f64,
    burst: f64,
    conns: u32,
    at_data_end: bool,
    wording: Option<(&'static str, bool)>,
    lockout: Option<(f64, bool, bool)>,
    escalation: u32,
    greylist: f64,
    hot: Option<(u32, f64)>,
}

const WORDINGS: &[&str] = &[
    "421 4.7.0 Too many concurrent connections from your IP",
    "451 4.7.1 Please try again later",
    "450 4.7.0 Too many connections, slow down",
    "421 4.3.2 System not accepting network messages",
];

fn drawn() -> impl Strategy<Value = Drawn> {
    (
        (prop::sample::select(vec!["gmail", "yahoo", "microsoft", "generic"]), 300.0..1200.0f64, 1.0..4.0f64, 1u32..8),
        (any::<bool>(), prop::option::weighted(0.4, (prop::sample::select(WORDINGS.to_vec()), any::<bool>()))),
        (
            prop::option::weighted(0.4, (5.0..20.0f64, any::<bool>(), any::<bool>())),
            prop::sample::select(vec![0u32, 0, 30, 100]),
        ),
        (prop::sample::select(vec![0.0, 0.0, 2.0, 5.0]), prop::option::weighted(0.3, (5u32..30, 0.005..0.02f64))),
    )
        .prop_map(
            |((style, limit, burst, conns), (at_data_end, wording), (lockout, escalation), (greylist, hot))| Drawn {
                style,
                limit,
                burst,
                conns,
                at_data_end,
                wording,
                lockout,
                escalation,
                greylist,
                hot,
            },
        )
}

fn scenario(d: &Drawn) -> Scenario {
    let mut rx = format!(
        "style = '{}'\nlimit_per_min = {:.1}\nburst_seconds = {:.2}\nmax_connections = {}\nthrottle_at_data_end = {}\nescalation_deferrals = {}\nescalation_minutes = 0.5\ngreylist_seconds = {}\n",
        d.style, d.limit, d.burst, d.conns, d.at_data_end, d.escalation, d.greylist
    );
    if let Some((text, closes)) = d.wording {
        rx += &format!("rate_reply = '{text}'\nrate_reply_closes = {closes}\n");
    }
    if let Some((secs, extends, at_mail)) = d.lockout {
        rx += &format!("lockout_seconds = {secs:.1}\nlockout_extends = {extends}\nlockout_at_mail = {at_mail}\n");
    }
    let mut hot_share = 0.0;
    if let Some((per_min, share)) = d.hot {
        rx += &format!("hot_mailbox_per_min = {per_min}\n");
        hot_share = share;
    }
    // Timings scaled as a judge on loopback scales them (a ten-minute pause is ten seconds, a
    // clean interval two, the first retry three, a greylist retry five), and two minutes of mail
    // at the hidden rate.
    let messages = (d.limit * 2.0) as u64;
    toml::from_str(&format!(
        r#"
name = "random"
max_hours = 1.0
settle_seconds = 30
retry_first_seconds = 3
greylist_retry_seconds = 5
[weir]
max_rate_per_min = 1200.0
max_connections = 10
pause_ms = 10000
step_interval_ms = 2000
decrease_cooldown_ms = 500
block_pause_ms = 60000
incident_clear_ms = 10000
[baselines]
fixed_rate_per_min = 1200.0
fixed_connections = 10
postfix_connections = 20
[[provider]]
name = "rx"
messages = {messages}
invalid_fraction = 0.01
hot_share = {hot_share}
[provider.receiver]
{rx}
"#
    ))
    .expect("scenario")
}

proptest! {
    // A fixed seed: the same twelve receivers on every run, so a failure is a change in weir.
    #![proptest_config(ProptestConfig {
        cases: 12,
        max_shrink_iters: 0,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(25),
        ..ProptestConfig::default()
    })]

    #[test]
    fn pacing_holds_on_receivers_it_was_not_tuned_on(d in drawn()) {
        let s = scenario(&d);
        let r = run_lane(&s, &s.providers[0], Sender::Weir).expect("simulation");
        let show = format!("{d:?}\n{}", serde_json::to_string(&r).expect("json"));
        // The last run's full report, to read when a receiver fails.
        let _ = std::fs::write(
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("random-receiver.json"),
            serde_json::to_string_pretty(&(format!("{d:?}"), &r)).unwrap_or_default(),
        );
        prop_assert!(r.drained && r.final_delivery_rate >= 0.999, "not all delivered: {show}");
        prop_assert_eq!(r.attempts_without_offer, 0, "attempts for recipients never offered: {}", show);
        // The aim is 1.3× the best; the figures over forty receivers are in docs/BENCHMARKS.md
        // (most within 1.3×, none over 2.5×: a lock-out that must be found costs its wait).
        prop_assert!(r.drain_ratio <= 2.5, "drain {:.2}× the best: {}", r.drain_ratio, show);
        prop_assert!(r.first_deferral_rate_settled < 0.01, "settled first-attempt deferrals {:.3}: {}", r.first_deferral_rate_settled, show);
    }
}

/// The figures behind the property: `benches/random_receivers.sh` runs this over a fixed set
/// of drawn receivers and prints one line per receiver (not a pass/fail check).
#[test]
#[ignore = "a report for docs/BENCHMARKS.md; run by benches/random_receivers.sh"]
fn random_receivers_report() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let n: usize = std::env::var("RECEIVERS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let only: Option<usize> = std::env::var("RECEIVER").ok().and_then(|v| v.parse().ok());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let mut ratios = Vec::new();
    for i in 0..n {
        let d = drawn().new_tree(&mut runner).expect("draw").current();
        if only.is_some_and(|o| o != i) {
            continue;
        }
        let s = scenario(&d);
        let r = run_lane(&s, &s.providers[0], Sender::Weir).expect("simulation");
        let p = run_lane(&s, &s.providers[0], Sender::Postfix).expect("simulation");
        let hot = if r.hot_messages > 0 {
            format!(" hot-mailbox-refusals-per-delivery {:.2}", r.mailbox_refusals as f64 / r.hot_messages as f64)
        } else {
            String::new()
        };
        println!(
            "{i:3} ratio {:.2} postfix {:.2} delivered {:.3} settled-first-deferrals {:.4} unoffered {}{hot} | {d:?}",
            r.drain_ratio,
            p.drain_ratio,
            r.final_delivery_rate,
            r.first_deferral_rate_settled,
            r.attempts_without_offer
        );
        let _ = std::fs::write(
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("receiver-{i}.json")),
            serde_json::to_string_pretty(&(format!("{d:?}"), &r)).unwrap_or_default(),
        );
        ratios.push(r.drain_ratio);
    }
    ratios.sort_by(f64::total_cmp);
    let q = |f: f64| ratios[((ratios.len() - 1) as f64 * f) as usize];
    println!(
        "receivers {n}: drain/best median {:.2}, p90 {:.2}, max {:.2}; within 1.3x: {}",
        q(0.5),
        q(0.9),
        q(1.0),
        ratios.iter().filter(|r| **r <= 1.3).count()
    );
}
