use super::*;
use proptest::prelude::*;

const S: u64 = NANOS_PER_SEC;
const T0: u64 = 1_700_000_000 * S;

fn limits(max_24h: Option<u64>, rate: f64, burst: f64) -> Limits {
    Limits { max_24h, max_rate: Some(rate), burst_seconds: burst, sending_enabled: true }
}

#[test]
fn one_per_second_ten_recipients_waits_ten_seconds() {
    let l = limits(None, 1.0, 1.0);
    let mut q = QuotaState::new();
    assert!(q.admit(&l, T0, 10).is_ok());
    match q.admit(&l, T0 + S, 1) {
        Err(Refusal::MaxSendRateExceeded { retry_after }) => {
            assert_eq!(retry_after, Duration::from_secs(9))
        }
        other => panic!("expected rate refusal, got {other:?}"),
    }
    assert!(q.admit(&l, T0 + 10 * S - 1, 1).is_err());
    assert!(q.admit(&l, T0 + 10 * S, 1).is_ok());
}

#[test]
fn burst_capacity_allows_back_to_back_sends() {
    let l = limits(None, 2.0, 5.0); // capacity 10
    let mut q = QuotaState::new();
    for _ in 0..10 {
        assert!(q.admit(&l, T0, 1).is_ok());
    }
    assert!(matches!(q.admit(&l, T0, 1), Err(Refusal::MaxSendRateExceeded { .. })));
}

#[test]
fn daily_quota_counts_recipients_and_rolls() {
    let l = limits(Some(5), 1000.0, 10.0);
    let mut q = QuotaState::new();
    assert!(q.admit(&l, T0, 3).is_ok());
    assert!(q.admit(&l, T0 + 3600 * S, 2).is_ok());
    match q.admit(&l, T0 + 3601 * S, 1) {
        Err(Refusal::DailyQuotaExceeded { retry_after: Some(d) }) => {
            assert_eq!(d, Duration::from_secs(WINDOW_SECS - 3601))
        }
        other => panic!("expected daily refusal, got {other:?}"),
    }
    // A request that alone exceeds the quota can never pass.
    assert_eq!(q.admit(&l, T0, 6), Err(Refusal::DailyQuotaExceeded { retry_after: None }));
    // Exactly 24 h later the first 3 expire.
    assert_eq!(q.sent_last_24h(T0 + WINDOW_SECS * S - 1), 5);
    assert_eq!(q.sent_last_24h(T0 + WINDOW_SECS * S), 2);
    assert!(q.admit(&l, T0 + WINDOW_SECS * S, 3).is_ok());
}

#[test]
fn order_is_paused_then_daily_then_rate() {
    let mut l = limits(Some(1), 1.0, 1.0);
    let mut q = QuotaState::new();
    assert!(q.admit(&l, T0, 1).is_ok());
    // Both daily and rate would refuse: daily wins.
    assert!(matches!(q.admit(&l, T0, 1), Err(Refusal::DailyQuotaExceeded { .. })));
    l.sending_enabled = false;
    assert_eq!(q.admit(&l, T0, 1), Err(Refusal::SendingPaused));
}

#[test]
fn refusals_charge_nothing_and_refund_undoes_a_charge() {
    let l = limits(Some(10), 1.0, 1.0);
    let mut q = QuotaState::new();
    let c = q.admit(&l, T0, 4).expect("first send");
    let before = (q.sent_last_24h(T0), q.tat());
    for _ in 0..100 {
        assert!(q.admit(&l, T0, 1).is_err());
    }
    assert_eq!((q.sent_last_24h(T0), q.tat()), before);
    q.refund(&c);
    assert_eq!(q.sent_last_24h(T0), 0);
    assert!(q.admit(&l, T0, 1).is_ok());
}

#[test]
fn restore_rebuilds_window_and_bucket() {
    let l = limits(Some(10), 1.0, 1.0);
    let mut q = QuotaState::new();
    q.admit(&l, T0, 4).expect("send");
    q.admit(&l, T0 + 5 * S, 3).expect("send");
    let persisted: Vec<(u64, u64)> = q.window.iter().copied().collect();
    let mut r = QuotaState::restore(persisted, q.tat());
    assert_eq!(r.sent_last_24h(T0 + 6 * S), 7);
    assert_eq!(r.admit(&l, T0 + 6 * S, 1), q.admit(&l, T0 + 6 * S, 1));
}

#[test]
fn unlimited_settings_never_refuse() {
    let l = Limits { max_24h: None, max_rate: None, burst_seconds: 1.0, sending_enabled: true };
    let mut q = QuotaState::new();
    for i in 0..1000 {
        assert!(q.admit(&l, T0 + i, 50).is_ok());
    }
    assert_eq!(q.sent_last_24h(T0 + 1000), 50_000);
}

/// Brute-force model straight from the spec text: every accepted send is remembered and summed
/// over the window; the bucket is simulated in integer "token-nanoseconds".
struct Model {
    sends: Vec<(u64, u64)>, // (second, n)
    tokens: i128,           // tokens × T
    last: u64,
    params_key: Option<RateParams>,
}

impl Model {
    fn new() -> Self {
        Model { sends: vec![], tokens: i128::MAX, last: 0, params_key: None }
    }

    fn sent(&self, now: u64) -> u64 {
        let now_s = now / S;
        self.sends.iter().filter(|(s, _)| s + WINDOW_SECS > now_s).map(|(_, n)| n).sum()
    }

    fn admit(&mut self, l: &Limits, now: u64, n: u64) -> Result<(), Refusal> {
        if !l.sending_enabled {
            return Err(Refusal::SendingPaused);
        }
        let p = l.rate_params();
        if p != self.params_key {
            // A changed rate starts from a bucket whose debt is kept in time units, as GCRA does.
            self.params_key = p;
        }
        if let Some(max) = l.max_24h {
            let sent = self.sent(now);
            if sent + n > max {
                let retry = if n > max {
                    None
                } else {
                    // Earliest expiry instant after which the remaining sum leaves room.
                    let mut candidates: Vec<u64> =
                        self.sends.iter().map(|(s, _)| (s + WINDOW_SECS) * S).filter(|t| *t > now).collect();
                    candidates.sort_unstable();
                    candidates.into_iter().find(|t| self.sent(*t) + n <= max).map(|t| Duration::from_nanos(t - now))
                };
                return Err(Refusal::DailyQuotaExceeded { retry_after: retry });
            }
        }
        if let Some(p) = p {
            let cap = i128::from(p.emission_ns + p.tau_ns);
            let refill = i128::from(now - self.last);
            self.tokens = self.tokens.saturating_add(refill).min(cap);
            self.last = now;
            let t = i128::from(p.emission_ns);
            if self.tokens < t {
                return Err(Refusal::MaxSendRateExceeded {
                    retry_after: Duration::from_nanos((t - self.tokens) as u64),
                });
            }
            self.tokens -= i128::from(n) * t;
        }
        self.sends.push((now / S, n));
        Ok(())
    }
}

fn arb_limits() -> impl Strategy<Value = Limits> {
    (
        prop_oneof![Just(None), (1u64..120).prop_map(Some)],
        prop_oneof![Just(0.5f64), Just(1.0), Just(2.0), Just(14.0), Just(0.3)],
        prop_oneof![Just(1.0f64), Just(2.5), Just(10.0)],
        prop::bool::weighted(0.95),
    )
        .prop_map(|(max_24h, r, b, enabled)| Limits {
            max_24h,
            max_rate: Some(r),
            burst_seconds: b,
            sending_enabled: enabled,
        })
}

fn arb_step() -> impl Strategy<Value = (u64, u64)> {
    let dt = prop_oneof![
        4 => 0u64..2 * S,
        2 => 0u64..60 * S,
        1 => 0u64..30 * 3600 * S,
    ];
    (dt, 1u64..=50)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The engine and the brute-force model agree on every decision, every retry-after and every
    /// `SentLast24Hours`, over random request sequences with fixed limits.
    #[test]
    fn engine_matches_brute_force_model(l in arb_limits(), steps in prop::collection::vec(arb_step(), 1..300)) {
        let mut q = QuotaState::new();
        let mut m = Model::new();
        let mut now = T0;
        m.last = now;
        for (dt, n) in steps {
            now += dt;
            let peek = q.check(&l, now, n as u32);
            let got = q.admit(&l, now, n as u32).map(|_| ());
            prop_assert_eq!(&peek, &got, "check and admit disagree");
            let want = m.admit(&l, now, n);
            prop_assert_eq!(&got, &want, "at t={} n={}", now - T0, n);
            prop_assert_eq!(q.sent_last_24h(now), m.sent(now));
        }
    }

    /// Persisting the per-second counts and the bucket state and restoring them (a restart)
    /// changes no later decision.
    #[test]
    fn restart_changes_nothing(l in arb_limits(), steps in prop::collection::vec(arb_step(), 2..200), cut in 0usize..200) {
        let mut a = QuotaState::new();
        let mut now = T0;
        let cut = cut % steps.len();
        for (i, (dt, n)) in steps.iter().enumerate() {
            now += dt;
            if i == cut {
                a = QuotaState::restore(a.window.iter().copied().collect::<Vec<_>>(), a.tat());
            }
            let _ = a.admit(&l, now, *n as u32);
        }
        let mut b = QuotaState::new();
        now = T0;
        for (dt, n) in &steps {
            now += dt;
            let _ = b.admit(&l, now, *n as u32);
        }
        prop_assert_eq!(a.sent_last_24h(now), b.sent_last_24h(now));
        prop_assert_eq!(a.tat(), b.tat());
    }
}

#[test]
fn a_recorded_charge_counts_as_an_admitted_one() {
    let l = limits(Some(10), 1.0, 1.0);
    let mut decided = QuotaState::new();
    let c = decided.admit(&l, 5 * NANOS_PER_SEC, 3).expect("accepted");
    let mut copy = QuotaState::new();
    copy.record(&c);
    assert_eq!(copy.sent_last_24h(5 * NANOS_PER_SEC), 3);
    assert_eq!(copy.tat(), decided.tat());
    // An older second recorded late lands in order and leaves the window first.
    copy.record(&Charge { second: 2, count: 1, tat_before: 0, tat_after: 0 });
    assert_eq!(copy.sent_last_24h(5 * NANOS_PER_SEC), 4);
    assert_eq!(copy.sent_last_24h((2 + WINDOW_SECS) * NANOS_PER_SEC), 3);
}
