//! Admission decisions per second: weir's quota engine beside governor's GCRA check, same run.
//!
//! Both limiters are configured so that every call is admitted (a high rate), which measures the
//! decision path itself. weir additionally maintains the rolling 24-hour window.

use std::hint::black_box;
use std::num::NonZeroU32;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use governor::clock::FakeRelativeClock;
use governor::{Quota, RateLimiter};
use std::time::Duration;
use weir_quota::{Limits, QuotaState};

fn admission(c: &mut Criterion) {
    let mut g = c.benchmark_group("admission");
    g.throughput(Throughput::Elements(1));

    let limits = Limits { max_24h: None, max_rate: Some(1e9), burst_seconds: 1.0, sending_enabled: true };
    let mut q = QuotaState::new();
    let mut now: u64 = 1_700_000_000_000_000_000;
    g.bench_function("weir_quota_admit", |b| {
        b.iter(|| {
            now += 1_000; // 1 µs of virtual time per request
            black_box(q.admit(&limits, black_box(now), 1).is_ok())
        })
    });

    let daily = Limits { max_24h: Some(u64::MAX / 2), ..limits.clone() };
    let mut q2 = QuotaState::new();
    let mut now2: u64 = 1_700_000_000_000_000_000;
    g.bench_function("weir_quota_admit_with_daily_cap", |b| {
        b.iter(|| {
            now2 += 1_000;
            black_box(q2.admit(&daily, black_box(now2), 1).is_ok())
        })
    });

    let quota = Quota::per_second(NonZeroU32::new(1_000_000_000).expect("non-zero"));
    // governor with its default clock reads the monotonic clock inside every check...
    let rl = RateLimiter::direct(quota);
    g.bench_function("governor_check", |b| b.iter(|| black_box(rl.check().is_ok())));
    // ...and with a fake clock, like weir's engine, which takes `now` as an argument.
    let clock = FakeRelativeClock::default();
    let rl_fake = RateLimiter::direct_with_clock(quota, clock.clone());
    g.bench_function("governor_check_fake_clock", |b| {
        b.iter(|| {
            clock.advance(Duration::from_micros(1));
            black_box(rl_fake.check().is_ok())
        })
    });
    g.finish();
}

criterion_group!(benches, admission);
criterion_main!(benches);
