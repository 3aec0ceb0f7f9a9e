//! The Lua script in a real `redis-server` and the pure engine, driven with the same random
//! request sequences, must decide identically (times in whole microseconds, rates whose token
//! interval is a whole number of microseconds: the script's resolution).

use std::time::Duration;

mod common;

use common::{Server, server};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use weir_quota::{Limits, QuotaState};

const US: u64 = 1000;
const T0_US: u64 = 1_700_000_000_000_000;

#[derive(Debug, Clone)]
enum Step {
    Admit { dt_us: u64, n: u32 },
    Check { dt_us: u64, n: u32 },
}

fn step() -> impl Strategy<Value = Step> {
    // Exact multiples of the token intervals and of the window hit the boundaries (a token
    // just earned, a second just leaving the window), where an off-by-one would show.
    let exact = prop::sample::select(vec![
        1_000,
        12_500,
        20_000,
        50_000,
        100_000,
        125_000,
        200_000,
        250_000,
        500_000,
        1_000_000,
        2_000_000,
        86_399_000_000,
        86_399_999_999,
        86_400_000_000,
        86_401_000_000,
    ]);
    let dt = prop_oneof![
        5 => 0u64..2_000_000,
        5 => exact,
        2 => 0u64..20,
        1 => 80_000_000_000u64..90_000_000_000, // about a day: the window rolls
    ];
    (dt, 1u32..6, 0u8..5)
        .prop_map(|(dt_us, n, k)| if k == 0 { Step::Check { dt_us, n } } else { Step::Admit { dt_us, n } })
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        prop::option::of(0u64..30),
        prop::option::of(prop::sample::select(vec![1.0, 2.0, 4.0, 5.0, 8.0, 10.0, 20.0, 50.0, 100.0, 1000.0])),
        prop::sample::select(vec![1.0, 2.0, 5.0]),
        prop::bool::weighted(0.95),
    )
        .prop_map(|(max_24h, max_rate, burst_seconds, sending_enabled)| Limits {
            max_24h,
            max_rate,
            burst_seconds,
            sending_enabled,
        })
}

/// Both engines over one request sequence on a fresh (account, region).
fn same_decisions(srv: &Server, account: i64, l: &Limits, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut pure = QuotaState::new();
    let mut now_us = T0_US;
    for (i, s) in steps.iter().enumerate() {
        match *s {
            Step::Admit { dt_us, n } => {
                now_us += dt_us;
                let want = pure.admit(l, now_us * US, n);
                let got =
                    srv.rt.block_on(srv.quota.admit("t", account, "us-east-1", l, n, None, Some(now_us * US), false));
                prop_assert_eq!(&got.expect("redis"), &want, "step {} {:?}", i, s);
            }
            Step::Check { dt_us, n } => {
                now_us += dt_us;
                let want = pure.check(l, now_us * US, n);
                let got = srv.rt.block_on(srv.quota.check("t", account, "us-east-1", l, n, Some(now_us * US), false));
                prop_assert_eq!(&got.expect("redis"), &want, "step {} {:?}", i, s);
            }
        }
    }
    Ok(())
}

#[test]
fn redis_script_decides_as_the_pure_engine() {
    let srv = server();
    let account = std::cell::Cell::new(0i64);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 500, ..ProptestConfig::default() });
    let result = runner.run(&(limits(), prop::collection::vec(step(), 1..40)), |(l, steps)| {
        account.set(account.get() + 1);
        same_decisions(&srv, account.get(), &l, &steps)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn a_retried_admit_with_the_same_message_id_is_charged_once() {
    let srv = server();
    let (rt, q, account) = (&srv.rt, &srv.quota, 1);
    let l = Limits { max_24h: Some(10), max_rate: None, burst_seconds: 1.0, sending_enabled: true };
    let now = Some(T0_US * US);
    let first = rt.block_on(q.admit("t", account, "eu-west-1", &l, 3, Some("m-1"), now, false)).expect("redis");
    let again = rt.block_on(q.admit("t", account, "eu-west-1", &l, 3, Some("m-1"), now, false)).expect("redis");
    assert_eq!(first, again);
    // Only 3 of the 10 are spent: 7 more pass, the 8th does not.
    assert!(rt.block_on(q.admit("t", account, "eu-west-1", &l, 7, Some("m-2"), now, false)).expect("redis").is_ok());
    assert!(rt.block_on(q.admit("t", account, "eu-west-1", &l, 1, Some("m-3"), now, false)).expect("redis").is_err());
}

#[test]
fn the_servers_clock_is_used_when_no_time_is_given() {
    let srv = server();
    assert!(srv.url.contains("@127.0.0.1:"));
    let (rt, q, account) = (&srv.rt, &srv.quota, 2);
    let l = Limits { max_24h: None, max_rate: Some(1.0), burst_seconds: 1.0, sending_enabled: true };
    let c =
        rt.block_on(q.admit("t", account, "us-east-1", &l, 1, None, None, false)).expect("redis").expect("accepted");
    let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    assert!(c.second.abs_diff(wall) <= 2, "charged second {} vs wall clock {wall}", c.second);
    // One per second: an immediate second request is refused with under a second to wait.
    match rt.block_on(q.admit("t", account, "us-east-1", &l, 1, None, None, false)).expect("redis") {
        Err(weir_quota::Refusal::MaxSendRateExceeded { retry_after }) => assert!(retry_after <= Duration::from_secs(1)),
        other => panic!("expected a rate refusal, got {other:?}"),
    }
}
