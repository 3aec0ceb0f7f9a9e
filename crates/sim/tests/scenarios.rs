//! The real delivery engine against modelled receivers, in virtual time (small campaigns: the
//! shipped scenarios run whole with `weir simulate`).

use weir_sim::{LaneReport, Scenario, Sender, run_lane};

fn scenario(receiver: &str, messages: u64, weir: &str) -> Scenario {
    toml::from_str(&format!(
        r#"
name = "test"
max_hours = 6.0
[weir]
{weir}
[baselines]
fixed_rate_per_min = 1200.0
fixed_connections = 10
postfix_connections = 20
[[provider]]
name = "rx"
messages = {messages}
invalid_fraction = 0.01
[provider.receiver]
{receiver}
"#
    ))
    .expect("scenario")
}

fn run(s: &Scenario, sender: Sender) -> LaneReport {
    run_lane(s, &s.providers[0], sender).expect("simulation")
}

fn kinds(r: &LaneReport) -> Vec<&'static str> {
    r.timeline.iter().map(|e| e.kind).collect()
}

#[test]
fn gmail_4_7_28_at_rcpt_pauses_the_lane_and_every_valid_recipient_is_delivered() {
    let s = scenario(
        "style = 'gmail'\nlimit_per_min = 600.0\nmax_connections = 10\nescalation_deferrals = 50\n",
        1500,
        "max_rate_per_min = 1200.0\nmax_connections = 10\n",
    );
    let weir = run(&s, Sender::Weir);
    assert!(weir.drained && weir.final_delivery_rate >= 0.999, "{weir:?}");
    let k = kinds(&weir);
    assert_eq!(k.first(), Some(&"pause"), "{k:?}");
    assert!(weir.timeline[0].reason.contains("4.7.28"));
    let fixed = run(&s, Sender::Fixed);
    assert!(weir.deferrals * 10 < fixed.deferrals, "weir {} vs fixed {}", weir.deferrals, fixed.deferrals);
    assert!(weir.drain_minutes < fixed.drain_minutes);
}

#[test]
fn connection_cap_at_the_greeting_lowers_concurrency_and_keeps_the_rate() {
    let s = scenario(
        "style = 'generic'\nlimit_per_min = 1200.0\nmax_connections = 2\nreply_delay_ms = 20\n",
        2000,
        "max_rate_per_min = 1200.0\nmax_connections = 10\n",
    );
    let weir = run(&s, Sender::Weir);
    assert!(weir.drained && weir.final_delivery_rate >= 0.999, "{weir:?}");
    let k = kinds(&weir);
    assert!(k.contains(&"fewer_connections"), "{k:?}");
    assert!(!k.contains(&"slow_down") && !k.contains(&"pause"), "{k:?}");
    assert_eq!(weir.deferrals, 0, "a refused connection defers no recipient");
    assert!(weir.connections_refused < 40, "reconnect storm: {}", weir.connections_refused);
    // A small campaign: the first seconds of finding the cap weigh more here than in a long one.
    assert!(weir.drain_ratio < 1.5, "drain {} min vs best {}", weir.drain_minutes, weir.best_minutes);
}

#[test]
fn shipped_scenarios_parse() {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenarios"));
    let mut paths = Vec::new();
    for dir in [root.to_path_buf(), root.join("scaled")] {
        for entry in std::fs::read_dir(&dir).expect("dir") {
            paths.push(entry.expect("entry").path());
        }
    }
    let paths: Vec<_> = paths.into_iter().filter(|p| p.extension().is_some_and(|e| e == "toml")).collect();
    assert!(paths.len() >= 10, "{paths:?}");
    for path in paths {
        let text = std::fs::read_to_string(&path).expect("read");
        let s: Scenario = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!s.providers.is_empty());
    }
}

/// The same engine and receiver over loopback TCP in real time, pacing timings scaled down
/// (pause 10 min → 4 s, step 60 s → 1 s, first retry 15 min → 2 s).
#[test]
fn gmail_like_receiver_over_loopback_in_scaled_real_time() {
    let s: Scenario = toml::from_str(
        r#"
name = "loopback"
max_hours = 0.05
retry_first_seconds = 2
[weir]
max_rate_per_min = 2400.0
max_connections = 5
pause_ms = 4000
step_interval_ms = 1000
decrease_cooldown_ms = 500
[baselines]
fixed_rate_per_min = 2400.0
fixed_connections = 5
postfix_connections = 10
[[provider]]
name = "gmail"
messages = 300
[provider.receiver]
style = "gmail"
limit_per_min = 1200.0
max_connections = 5
reply_delay_ms = 5
"#,
    )
    .expect("scenario");
    let weir = weir_sim::run_lane_in(&s, &s.providers[0], Sender::Weir, weir_sim::Mode::Loopback).expect("run");
    eprintln!("{}", serde_json::to_string(&weir).expect("json"));
    assert!(weir.drained && weir.final_delivery_rate >= 0.999, "{weir:?}");
    let k = kinds(&weir);
    assert_eq!(k.first(), Some(&"pause"), "{k:?}");
    assert!(weir.timeline[0].reason.contains("4.7.28"), "{:?}", weir.timeline[0]);
    // 300 at 1,200/min is 15 s at best; one scaled pause (4 s) and a clean climb fit in 40.
    assert!(weir.drain_minutes * 60.0 < 40.0, "drained in {:.1} s", weir.drain_minutes * 60.0);
}
