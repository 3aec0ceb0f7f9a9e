use super::*;
use proptest::prelude::*;

const MIN: Millis = 60_000;

/// Timings scaled as a judge on loopback scales them (a 10 s wait, a 2 s clean interval), for a
/// lane of 1,200/min on 5 connections.
fn scaled() -> PacingConfig {
    PacingConfig {
        max_rate_per_min: 1200.0,
        max_connections: 5,
        pause_ms: 10_000,
        step_interval_ms: 2_000,
        ..Default::default()
    }
}

const TSS04: &str = "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred";

/// One message accepted just after `t`, then `step` ms later a tick; the rate after it.
fn clean_step(c: &mut Controller, t: &mut Millis, step: Millis) -> f64 {
    c.on_reply(*t + 1, Category::Accepted, "250");
    *t += step;
    c.on_tick(*t);
    c.allowance(*t).rate_per_min
}

#[test]
fn gmail_4_7_28_pauses_then_resumes_with_one_connection() {
    let mut c = Controller::new(PacingConfig { max_rate_per_min: 1000.0, max_connections: 8, ..Default::default() }, 0);
    c.on_reply(1000, Category::UnusualRate, "421 4.7.28 Gmail has detected an unusual rate");
    let a = c.allowance(2000);
    assert_eq!(a.paused_until, Some(1000 + 10 * MIN));
    assert!(!a.bulk_allowed);
    c.on_tick(5 * MIN);
    assert!(c.allowance(5 * MIN).paused_until.is_some(), "at least ten minutes");
    c.on_tick(10 * MIN + 1000);
    let a = c.allowance(10 * MIN + 1000);
    assert_eq!((a.paused_until, a.connections), (None, 1));
    // Connections come back one at a time, each after a clean interval.
    let mut t = 10 * MIN + 1000;
    for expected in 2..=4 {
        c.on_reply(t + 1, Category::Accepted, "250 ok");
        t += MIN;
        c.on_tick(t);
        assert_eq!(c.allowance(t).connections, expected);
    }
    c.on_drained(t + 1);
    c.on_drained(t + 2);
    let kinds: Vec<&str> = c.timeline().iter().map(|e| e.kind).collect();
    assert_eq!(&kinds[..3], &["pause", "probe", "resume"]);
    assert_eq!(kinds.iter().filter(|k| **k == "drained").count(), 1, "{kinds:?}");
}

#[test]
fn after_a_failed_probe_the_lane_returns_to_the_rate_it_held_clean_and_does_not_probe_again_soon() {
    let cfg = PacingConfig { max_rate_per_min: 3000.0, max_connections: 10, ..Default::default() };
    let mut c = Controller::new(cfg, 0);
    // Ten minutes of sending, then a 4.7.28.
    c.on_reply(10 * MIN, Category::UnusualRate, "421 4.7.28");
    let mut t = 20 * MIN + 1000;
    c.on_tick(t);
    let held = c.allowance(t).rate_per_min;
    // Held clean for two hours (no probing after a 4.7.28), then one probe step, refused.
    while c.allowance(t).rate_per_min <= held {
        clean_step(&mut c, &mut t, MIN);
        assert!(t < 3 * 60 * MIN, "never probed");
    }
    c.on_reply(t + 1, Category::UnusualRate, "421 4.7.28");
    t += 10 * MIN + 2;
    let mut rates = vec![];
    for _ in 0..45 {
        rates.push(clean_step(&mut c, &mut t, MIN));
    }
    let top = rates.iter().copied().fold(0.0, f64::max);
    assert!((top - held).abs() < 1e-6, "back to {held}, never above for 45 minutes: {rates:?}");
}

#[test]
fn after_a_4_7_28_a_rate_clean_for_one_short_interval_is_not_taken_as_proven() {
    // Scaled timings: a 2 s step against a receiver that counts over longer windows.
    let cfg = scaled();
    let mut c = Controller::new(cfg, 0);
    c.on_reply(20_000, Category::UnusualRate, "421 4.7.28");
    let mut t = 30_000;
    c.on_tick(t);
    let resumed = c.allowance(t).rate_per_min;
    let mut rates = vec![];
    for _ in 0..120 {
        rates.push(clean_step(&mut c, &mut t, 2_000));
    }
    // With no work said to be waiting, the rate that met the 4.7.28 bounds the lane for twelve
    // pauses' time; then one small probe per proof window (a pause's length), not one per clean
    // step interval.
    let steps = rates.windows(2).filter(|w| w[1] > w[0]).count();
    assert!(rates[..54].iter().all(|r| (*r - resumed).abs() < 1e-6), "{rates:?}");
    assert!((1..=14).contains(&steps), "{steps} probe steps in four minutes: {rates:?}");
}

/// A lane at 3,000/min meets `category` once after ten minutes of sending; after the ten-minute
/// wait the probe is accepted.
/// Returns the resumed rate, then the rate and connections after each of 45 clean minutes.
fn clean_hour_after_lockout(category: Category, reply: &str) -> (f64, Vec<f64>, Vec<u32>) {
    let cfg = PacingConfig { max_rate_per_min: 3000.0, max_connections: 10, ..Default::default() };
    let mut c = Controller::new(cfg, 0);
    // After ten minutes of sending.
    c.on_reply(10 * MIN, category, reply);
    let mut t = 20 * MIN + 1000;
    c.on_tick(t);
    let resumed = c.allowance(t).rate_per_min;
    let (mut rates, mut conns) = (vec![], vec![]);
    for _ in 0..45 {
        rates.push(clean_step(&mut c, &mut t, MIN));
        conns.push(c.allowance(t).connections);
    }
    (resumed, rates, conns)
}

#[test]
fn a_first_4_7_28_with_no_clean_rate_known_resumes_lower_and_does_not_climb_into_another_pause() {
    let (resumed, rates, conns) = clean_hour_after_lockout(Category::UnusualRate, "421 4.7.28");
    assert!(resumed < 3000.0 * 0.5, "{resumed}");
    assert!(rates.iter().all(|r| (r - resumed).abs() < 1e-6), "no climb above {resumed} for an hour: {rates:?}");
    // Connections still come back, one per clean interval.
    assert_eq!(conns[..3], [2, 3, 4]);
}

#[test]
fn a_yahoo_lockout_with_nothing_known_climbs_in_minutes_to_the_step_under_the_refused_rate() {
    let (resumed, rates, _) = clean_hour_after_lockout(Category::YahooDeferral, TSS04);
    assert!(resumed < 3000.0 * 0.5, "{resumed}");
    assert!((rates[2] - 2100.0).abs() < 1e-6, "{rates:?}");
    assert!(rates.iter().all(|r| *r <= 2100.0 + 1e-6), "{rates:?}");
}

#[test]
fn refused_connections_lower_concurrency_once_per_window_and_keep_the_rate() {
    let mut c = Controller::new(PacingConfig { max_rate_per_min: 1200.0, max_connections: 5, ..Default::default() }, 0);
    // Three refusals at once while two connections were open: one change, to two.
    for t in [1000, 1010, 1020] {
        c.on_connection_refused(t, Some(2), "421 4.7.0 Too many concurrent connections");
    }
    let a = c.allowance(2000);
    assert_eq!((a.connections, a.rate_per_min, a.paused_until), (2, 1200.0, None));
    // Clean intervals do not climb straight back into the cap: one more only after several.
    let mut t = 10_000;
    let mut seen = vec![];
    for _ in 0..15 {
        clean_step(&mut c, &mut t, MIN);
        seen.push(c.allowance(t).connections);
    }
    assert_eq!(seen[0], 2, "{seen:?}");
    assert_eq!(seen[9], 3, "{seen:?}");
    assert!(c.timeline().iter().all(|e| e.kind != "slow_down"));
}

#[test]
fn connection_complaints_that_go_on_after_fewer_connections_lower_the_rate() {
    let mut c = Controller::new(PacingConfig { max_rate_per_min: 1200.0, max_connections: 5, ..Default::default() }, 0);
    let words = "421 4.7.0 Too many concurrent connections";
    // Inside sessions: the first complaint is trusted, one connection fewer.
    c.on_reply(1000, Category::TooManyConnections, words);
    assert_eq!((c.allowance(1000).connections, c.allowance(1000).rate_per_min), (4, 1200.0));
    // They go on while the lane keeps to four: the number was not the problem.
    c.on_reply(7000, Category::TooManyConnections, words);
    let a = c.allowance(7000);
    assert!(a.rate_per_min < 1200.0 * 0.75, "{a:?}");
    assert_eq!(c.timeline().last().map(|e| e.kind), Some("slow_down"));
    // At the greeting with fewer sessions open than the cap it taught: also the rate.
    let mut g = Controller::new(PacingConfig { max_rate_per_min: 1200.0, max_connections: 5, ..Default::default() }, 0);
    g.on_connection_refused(1000, Some(3), words);
    assert_eq!(g.allowance(1000).connections, 3);
    g.on_connection_refused(7000, Some(1), words);
    assert!(g.allowance(7000).rate_per_min < 1200.0 * 0.75);
}

#[test]
fn a_lockout_is_one_incident_with_one_probe_at_a_time() {
    let cfg = PacingConfig { max_rate_per_min: 600.0, max_connections: 5, pause_ms: 10_000, ..Default::default() };
    let mut c = Controller::new(cfg, 0);
    for t in 0..60 {
        c.on_reply(t * 100, Category::Accepted, "250");
    }
    // Four refusals of one lock-out (connections already open, in the same seconds): one cut.
    for t in [6_000, 6_050, 6_300, 7_900] {
        c.on_reply(t, Category::YahooDeferral, TSS04);
    }
    let cut = c.allowance(8_000).rate_per_min;
    assert_eq!(c.timeline().iter().filter(|e| e.kind == "pause").count(), 1);
    assert_eq!(c.allowance(8_000).paused_until, Some(16_000));
    // The wait ends: one connection probes. Refused: the wait doubles, the rate stays.
    c.on_tick(16_000);
    assert_eq!((c.allowance(16_000).paused_until, c.allowance(16_000).connections), (None, 1));
    c.on_reply(16_100, Category::YahooDeferral, TSS04);
    assert_eq!(c.allowance(16_200).paused_until, Some(36_100));
    assert_eq!(c.allowance(16_200).rate_per_min, cut);
    c.on_tick(36_100);
    c.on_reply(36_200, Category::Accepted, "250");
    let kinds: Vec<&str> = c.timeline().iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["pause", "probe", "probe_refused", "probe", "resume"]);
    assert!(c.timeline()[4].reason.contains("resumed at"), "{:?}", c.timeline()[4]);
    assert_eq!(c.allowance(36_300).rate_per_min, cut);
}

#[test]
fn after_a_lockout_the_rate_climbs_geometrically_to_what_passed_before() {
    let cfg = PacingConfig {
        max_rate_per_min: 600.0,
        max_connections: 5,
        pause_ms: 10_000,
        step_interval_ms: 2_000,
        ..Default::default()
    };
    let mut c = Controller::new(cfg, 0);
    // 300 a minute went through for ten seconds, then the lock-out.
    for i in 0..50 {
        c.on_reply(i * 200, Category::Accepted, "250");
    }
    c.on_reply(10_000, Category::YahooDeferral, "421 4.7.0 [TSS04] deferred");
    let resumed = c.allowance(10_000).rate_per_min;
    assert!(resumed <= 300.0, "{resumed}");
    c.on_tick(20_000);
    let mut t = 20_000;
    let mut rates = vec![];
    for _ in 0..20 {
        rates.push(clean_step(&mut c, &mut t, 2_000));
    }
    // Within a few clean intervals, at (not above) the rate known to pass.
    assert!(rates[4] >= resumed, "{rates:?}");
    let top = rates.iter().copied().fold(0.0, f64::max);
    assert!((250.0..=300.0).contains(&top), "{rates:?}");
}

#[test]
fn throttling_decreases_multiplicatively_and_recovers_stepwise() {
    let cfg = PacingConfig { max_rate_per_min: 1000.0, max_connections: 10, ..Default::default() };
    let mut c = Controller::new(cfg, 0);
    c.on_reply(1000, Category::RateLimited, "421 4.7.0 Rate limit exceeded");
    assert_eq!(c.allowance(1000).rate_per_min, 700.0);
    assert_eq!(c.allowance(1000).connections, 7);
    // Replies to mail already in flight do not compound the decrease.
    c.on_reply(2000, Category::RateLimited, "421 4.7.0 Rate limit exceeded");
    assert_eq!(c.allowance(2000).rate_per_min, 700.0);
    // A deferral in an interval stops the step up.
    let mut t = 1000;
    t += MIN;
    c.on_tick(t);
    assert_eq!(c.allowance(t).rate_per_min, 700.0);
    // Clean intervals recover stepwise (25 % of normal), up to just under the learned ceiling.
    let mut rates = vec![];
    for _ in 0..6 {
        rates.push(clean_step(&mut c, &mut t, MIN));
    }
    assert_eq!(rates[0], 950.0, "min(700 + 250, 0.95 × 1000)");
    assert!(
        rates.windows(2).all(|w| w[1] >= w[0] && w[1] - w[0] <= 0.03 * w[0] + 1e-9),
        "then slow probing: {rates:?}"
    );
}

#[test]
fn refusals_that_go_on_after_a_cut_to_the_measured_rate_cut_to_what_was_accepted_since() {
    let cfg = PacingConfig { decrease_cooldown_ms: 500, ..scaled() };
    let mut c = Controller::new(cfg, 0);
    // Thirty seconds at 1,200/min, every other offer greylisted: the receiver takes 600/min.
    let mut t = 0;
    for i in 0..600 {
        t = i * 50;
        let category = if i % 2 == 0 { Category::Accepted } else { Category::Greylisted };
        c.on_reply(t, category, "250");
    }
    // The retries pass all at once and meet the rate: the first cut trusts the measure.
    c.on_reply(t + 10, Category::RateLimited, "451 4.7.1 Please try again later");
    let first = c.allowance(t + 10).rate_per_min;
    assert!(first > 1000.0, "{first}");
    // The refusals go on while 600/min is accepted: the next cut goes to that.
    for i in 1..=6 {
        c.on_reply(t + 10 + i * 100, Category::Accepted, "250");
    }
    c.on_reply(t + 610, Category::RateLimited, "451 4.7.1 Please try again later");
    let second = c.allowance(t + 610).rate_per_min;
    assert!((500.0..=600.0).contains(&second), "{first} then {second}");
}

#[test]
fn incidents_hold_bulk_not_rate_and_clear() {
    let mut c = Controller::new(PacingConfig::default(), 0);
    c.on_reply(0, Category::AuthOrTransport, "421 4.7.27 SPF authentication did not pass.");
    let a = c.allowance(1);
    assert!(!a.bulk_allowed && a.rate_per_min == 1200.0 && a.paused_until.is_none());
    c.on_tick(11 * MIN);
    assert!(c.allowance(11 * MIN).bulk_allowed);
}

#[test]
fn retry_after_is_exact_and_recipient_limits_do_not_touch_the_lane() {
    let mut c = Controller::new(PacingConfig::default(), 0);
    c.on_reply(0, Category::RecipientRateLimited, "450 4.2.1");
    assert_eq!(c.allowance(0).rate_per_min, 1200.0);
    c.on_retry_after(1000, 42_000);
    assert_eq!(c.allowance(1000).paused_until, Some(43_000));
    c.on_tick(43_000);
    assert_eq!(c.allowance(43_000).paused_until, None);
}

#[test]
fn warm_up_ramps_only_when_clean_and_falls_back() {
    let cfg = PacingConfig { max_rate_per_min: 1000.0, warmup_start_per_min: Some(50.0), ..Default::default() };
    let mut c = Controller::new(cfg, 0);
    assert_eq!((c.allowance(0).rate_per_min, c.allowance(0).connections), (50.0 * 0.95, 1));
    let mut t = 0;
    c.on_reply(t + 1, Category::Accepted, "250");
    c.on_tick(5 * MIN);
    assert_eq!(c.allowance(5 * MIN).rate_per_min, 50.0 * 0.95, "a warm-up step needs a whole clean warm-up interval");
    for _ in 0..3 {
        clean_step(&mut c, &mut t, 10 * MIN);
    }
    let level = 50.0 * 1.5 * 1.5 * 1.5;
    assert!((c.allowance(t).rate_per_min - level * 0.95).abs() < 1e-9, "a margin under the level reached");
    c.on_reply(t + 1, Category::RateLimited, "421 4.7.0 [TS04]");
    assert!(c.allowance(t + 1).rate_per_min < level * 0.95);
    assert_eq!(c.timeline().last().map(|e| e.kind), Some("warmup_fallback"));
}

proptest! {
    /// Whatever the replies, the controller stays within its bounds and never snaps back: a
    /// single step up never more than doubles the rate.
    #[test]
    fn bounded_and_never_snaps_back(events in prop::collection::vec((0u64..120_000, 0usize..6), 1..400)) {
        let cfg = PacingConfig { max_rate_per_min: 2000.0, max_connections: 12, ..Default::default() };
        let mut c = Controller::new(cfg, 0);
        let mut now = 0;
        let cats = [Category::Accepted, Category::RateLimited, Category::UnusualRate, Category::AuthOrTransport, Category::YahooDeferral, Category::RecipientRateLimited];
        let mut last = c.allowance(0).rate_per_min;
        for (dt, k) in events {
            now += dt;
            c.on_tick(now);
            c.on_reply(now, cats[k], "reply");
            let a = c.allowance(now);
            prop_assert!(a.rate_per_min >= cfg.min_rate_per_min && a.rate_per_min <= cfg.max_rate_per_min);
            prop_assert!(a.connections >= 1 && a.connections <= cfg.max_connections);
            prop_assert!(a.rate_per_min <= last * 2.0 + cfg.recover_step * cfg.max_rate_per_min + 1e-9);
            last = a.rate_per_min;
        }
    }
}

/// A lane at 1,200/min locked out by a TSS04 after twenty seconds of sending (scaled timings:
/// 10 s wait, 2 s step) with `backlog` messages waiting; the rate after each of 40 clean steps
/// from the probe.
fn clean_steps_after_a_tss04(backlog: u64) -> (f64, Vec<f64>) {
    let cfg = scaled();
    let mut c = Controller::new(cfg, 0);
    c.set_backlog(backlog);
    // After twenty seconds of sending.
    c.on_reply(20_000, Category::YahooDeferral, TSS04);
    let mut t = 30_000;
    c.on_tick(t);
    let resumed = c.allowance(t).rate_per_min;
    let mut rates = vec![];
    for _ in 0..40 {
        rates.push(clean_step(&mut c, &mut t, 2_000));
    }
    (resumed, rates)
}

#[test]
fn with_work_left_after_a_lockout_the_lane_searches_half_way_to_the_refused_rate() {
    let (resumed, rates) = clean_steps_after_a_tss04(100_000);
    assert!(resumed < 600.0, "{resumed}");
    // Back to the step under the refused rate, held one proof window, then half way to it.
    assert!(rates.contains(&840.0), "{rates:?}");
    assert!(rates.iter().any(|r| (*r - 1020.0).abs() < 1e-6), "{rates:?}");
    // Never back to the rate that met the lock-out, nor closer to it than the search allows.
    assert!(rates.iter().all(|r| *r < 1200.0 * 0.95), "{rates:?}");
}

#[test]
fn with_little_work_left_a_lockout_is_not_probed_again() {
    // Forty messages at 840/min: less than three waits' work; a failed probe would cost more.
    let (_, rates) = clean_steps_after_a_tss04(40);
    assert!(rates.iter().all(|r| *r <= 840.0 + 1e-6), "{rates:?}");
}

#[test]
fn a_trickle_taken_during_refusals_does_not_drop_the_rate_below_two_decreases() {
    let cfg = PacingConfig { max_rate_per_min: 1200.0, decrease_cooldown_ms: 500, ..Default::default() };
    let mut c = Controller::new(cfg, 0);
    // Twenty messages taken over twenty seconds (a receiver mostly locking the sender out, or
    // little mail to send), then a rate refusal.
    for s in 0..20 {
        c.on_reply(s * 1000, Category::Accepted, "250");
    }
    c.on_reply(20_000, Category::RateLimited, "451 4.7.500 Server busy");
    let rate = c.allowance(20_000).rate_per_min;
    assert!((rate - 840.0).abs() < 1e-6, "the usual decrease, not a fall to what passed: {rate}");
}

#[test]
fn a_greeting_refusal_at_the_taught_cap_lowers_connections_not_the_rate() {
    let mut c = Controller::new(PacingConfig { max_rate_per_min: 1200.0, max_connections: 5, ..Default::default() }, 0);
    let words = "421 4.7.0 Too many concurrent connections";
    // In a session: four connections.
    c.on_reply(1000, Category::TooManyConnections, words);
    assert_eq!(c.allowance(1000).connections, 4);
    // At the greeting with three open: the cap is three, the rate stays.
    c.on_connection_refused(7000, Some(3), words);
    let a = c.allowance(7000);
    assert_eq!((a.connections, a.rate_per_min), (3, 1200.0));
}

#[test]
fn a_rate_that_fails_at_once_is_cut_deeper_than_one_that_held_a_while() {
    let cfg = scaled();
    // The rate the lane climbs back to after a TSS04 at `at` ms of sending.
    let climbs_to = |at: Millis| {
        let mut c = Controller::new(cfg, 0);
        c.on_reply(at, Category::YahooDeferral, TSS04);
        let mut t = at + 10_000;
        c.on_tick(t);
        for _ in 0..10 {
            clean_step(&mut c, &mut t, 2_000);
        }
        c.allowance(t).rate_per_min
    };
    // Refused within a second: far over the receiver's limit.
    let at_once = climbs_to(1_000);
    let after_a_while = climbs_to(20_000);
    assert!(at_once < 1200.0 * 0.5, "{at_once}");
    assert!((after_a_while - 840.0).abs() < 1e-6, "{after_a_while}");
}

#[test]
fn probes_above_a_rate_ceiling_grow_while_they_hold() {
    let cfg = PacingConfig {
        max_rate_per_min: 10_000.0,
        pause_ms: 10_000,
        step_interval_ms: 2_000,
        decrease_cooldown_ms: 500,
        ..Default::default()
    };
    let mut c = Controller::new(cfg, 0);
    // Three refusals a cool-down apart: a ceiling far under the lane's normal rate.
    for t in [1_000, 2_000, 3_000] {
        c.on_reply(t, Category::RateLimited, "451 4.7.500 Server busy");
    }
    let mut t = 3_000;
    let mut rates = vec![c.allowance(t).rate_per_min];
    for _ in 0..60 {
        clean_step(&mut c, &mut t, 2_000);
        let r = c.allowance(t).rate_per_min;
        if r != *rates.last().unwrap_or(&0.0) {
            rates.push(r);
        }
    }
    let gains: Vec<f64> = rates.windows(2).map(|w| w[1] / w[0] - 1.0).collect();
    // The climb back under the ceiling, then probes above it: each that holds doubles the
    // next, up to a sixth of the rate.
    assert!(gains.len() >= 6, "{rates:?}");
    for (got, want) in gains[1..6].iter().zip([0.02, 0.04, 0.08, 0.16, 0.16]) {
        assert!((got - want).abs() < 1e-9, "{gains:?}");
    }
    // A refusal starts again from the small step.
    c.on_reply(t + 1, Category::RateLimited, "451 4.7.500 Server busy");
    let mut t = t + 1;
    let mut after = vec![c.allowance(t).rate_per_min];
    for _ in 0..30 {
        clean_step(&mut c, &mut t, 2_000);
        let r = c.allowance(t).rate_per_min;
        if r != *after.last().unwrap_or(&0.0) {
            after.push(r);
        }
    }
    let first_probe = after.windows(2).map(|w| w[1] / w[0] - 1.0).find(|g| *g < 0.1);
    assert!(first_probe.is_some_and(|g| (g - 0.02).abs() < 1e-9), "{after:?}");
}

#[test]
fn a_probe_that_meets_a_lockout_doubles_the_work_needed_before_the_next() {
    let cfg = scaled();
    let mut c = Controller::new(cfg, 0);
    // 500 messages waiting: at 840/min, about three waits' work.
    c.set_backlog(500);
    c.on_reply(20_000, Category::YahooDeferral, TSS04);
    let mut t = 30_000;
    c.on_tick(t);
    while c.allowance(t).rate_per_min <= 840.0 + 1e-6 {
        clean_step(&mut c, &mut t, 2_000);
        assert!(t < 120_000, "no probe with three waits' work left");
    }
    assert!((c.allowance(t).rate_per_min - 1020.0).abs() < 1e-6);
    // The probe meets a lock-out: back to the rate held, and the same work left no longer pays
    // for another probe.
    c.on_reply(t + 500, Category::YahooDeferral, TSS04);
    t += 10_600;
    c.on_tick(t);
    // (For the lock-out's memory: twelve waits, then small probes again.)
    for _ in 0..40 {
        clean_step(&mut c, &mut t, 2_000);
        assert!(c.allowance(t).rate_per_min <= 840.0 + 1e-6, "{:?}", c.allowance(t));
    }
}

/// The first wait of each of three TSS04 lock-outs in a row, when the receiver's penalty is
/// `penalty` ms (a probe inside it is refused) and every lock-out comes 30 s after resuming.
fn first_waits_of_tss04_lockouts(penalty: Millis) -> Vec<Millis> {
    let cfg =
        PacingConfig { max_rate_per_min: 1200.0, pause_ms: 10_000, step_interval_ms: 2_000, ..Default::default() };
    let mut c = Controller::new(cfg, 0);
    let mut t = 30_000;
    let mut waits = vec![];
    for _ in 0..3 {
        let locked_at = t;
        c.on_reply(t, Category::YahooDeferral, TSS04);
        waits.push(c.allowance(t).paused_until.expect("paused") - t);
        // Probe whenever the wait is over: refused inside the penalty, accepted after it.
        loop {
            t = c.allowance(t).paused_until.expect("paused");
            c.on_tick(t);
            if t - locked_at >= penalty {
                c.on_reply(t + 100, Category::Accepted, "250");
                break;
            }
            c.on_reply(t + 100, Category::YahooDeferral, TSS04);
            t += 100;
        }
        t += 30_000;
        c.on_tick(t);
    }
    waits
}

#[test]
fn a_receiver_whose_lockout_is_short_costs_shorter_waits_each_time() {
    // No penalty at all: each lock-out halves the first wait, down to an eighth of the pause.
    assert_eq!(first_waits_of_tss04_lockouts(0), vec![10_000, 5_000, 2_500]);
}

#[test]
fn a_refused_probe_teaches_the_wait_that_worked() {
    // A 15 s penalty: the first probe (10 s) is refused, the second (after 20 s more) passes;
    // the next lock-out waits those 20 s at once rather than knocking at 10, and the one after
    // tries a little shorter, never down to the wait that was refused.
    assert_eq!(first_waits_of_tss04_lockouts(15_000), vec![10_000, 20_000, 12_500]);
}
