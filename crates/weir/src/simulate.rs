//! `weir simulate SCENARIO.toml`: the real delivery engine against modelled receivers, in
//! virtual time, beside the same engine as a fixed-rate and as a Postfix-like sender.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use weir_sim::{LaneReport, Scenario};

/// Options of `weir simulate`.
#[derive(Args)]
pub struct SimulateArgs {
    /// Scenario files.
    #[arg(required = true)]
    scenarios: Vec<PathBuf>,
    /// Print JSON (with weir's incident timelines).
    #[arg(long)]
    json: bool,
    /// Real time over loopback TCP instead of virtual time (for scenarios with scaled-down
    /// pacing timings, `scenarios/scaled/`).
    #[arg(long)]
    loopback: bool,
    /// Run weir only, without the baselines.
    #[arg(long)]
    weir_only: bool,
}

fn better_or_equal(w: &LaneReport, b: &LaneReport) -> bool {
    let faster = w.drain_minutes <= b.drain_minutes * 1.0001;
    let fewer = w.first_deferral_rate_settled <= b.first_deferral_rate_settled + 1e-12;
    let strictly =
        w.drain_minutes < b.drain_minutes * 0.999 || w.first_deferral_rate_settled < b.first_deferral_rate_settled;
    faster && fewer && strictly
}

/// Run the scenarios and print the report.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let mut all = serde_json::Map::new();
    let all_senders = [weir_sim::Sender::Weir, weir_sim::Sender::Fixed, weir_sim::Sender::Postfix];
    let senders = if args.weir_only { &all_senders[..1] } else { &all_senders[..] };
    let mode = if args.loopback { weir_sim::Mode::Loopback } else { weir_sim::Mode::Virtual };
    for path in &args.scenarios {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let s: Scenario = toml::from_str(&text).with_context(|| format!("invalid scenario {}", path.display()))?;
        let started = Instant::now();
        let reports =
            weir_sim::run(&s, senders, mode).with_context(|| format!("simulation of {} failed", path.display()))?;
        let wall = started.elapsed().as_secs_f64();
        let attempts: u64 = reports.iter().map(|r| r.attempts).sum();
        if args.json {
            all.insert(
                s.name.clone(),
                serde_json::json!({ "wall_seconds": wall, "attempts": attempts, "lanes": reports }),
            );
            continue;
        }
        println!("== {} ({}): {} simulated delivery attempts in {:.2} s wall", s.name, path.display(), attempts, wall);
        println!(
            "{:<14} {:<13} {:>9} {:>9} {:>7} {:>12} {:>10} {:>6} {:>8} {:>9} {:>9}",
            "provider",
            "sender",
            "drain_min",
            "best_min",
            "ratio",
            "1st_defer%",
            "final_del%",
            "conns",
            "refused",
            "deferrals",
            "tx_drain"
        );
        for r in &reports {
            println!(
                "{:<14} {:<13} {:>9.1} {:>9.1} {:>7.3} {:>12.3} {:>10.2} {:>6} {:>8} {:>9} {:>9.1}{}",
                r.provider,
                r.sender,
                r.drain_minutes,
                r.best_minutes,
                r.drain_ratio,
                r.first_deferral_rate_settled * 100.0,
                r.final_delivery_rate * 100.0,
                r.max_connections_used,
                r.connections_refused,
                r.deferrals,
                r.transactional_drain_minutes,
                if r.drained { "" } else { "  (time limit)" }
            );
        }
        for w in reports.iter().filter(|r| r.sender == "weir") {
            let others: Vec<&LaneReport> =
                reports.iter().filter(|r| r.provider == w.provider && r.sender != "weir").collect();
            let targets = [
                ("settled first-deferral < 0.5%", w.first_deferral_rate_settled < 0.005),
                ("final delivery >= 99% of valid", w.final_delivery_rate >= 0.99),
                ("drain within 1.15x of best", w.drain_ratio <= 1.15),
            ];
            let mut line: Vec<String> =
                targets.iter().map(|(n, ok)| format!("{} {n}", if *ok { "PASS" } else { "FAIL" })).collect();
            if !others.is_empty() {
                let ok = others.iter().all(|b| better_or_equal(w, b));
                line.push(format!("{} better than both baselines", if ok { "PASS" } else { "FAIL" }));
            }
            println!("  weir on {}: {}", w.provider, line.join("; "));
            let pauses = w.timeline.iter().filter(|e| e.kind == "pause").count();
            let slows = w.timeline.iter().filter(|e| e.kind == "slow_down" || e.kind == "warmup_fallback").count();
            println!(
                "  weir timeline: {} entries ({} pauses, {} slow-downs); safe rate at the end {:.0}/min",
                w.timeline.len(),
                pauses,
                slows,
                w.timeline.last().map_or(0.0, |e| e.rate_per_min)
            );
        }
        println!();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::Value::Object(all))?);
    }
    Ok(())
}
