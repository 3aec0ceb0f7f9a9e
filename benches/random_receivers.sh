#!/usr/bin/env bash
# Pacing against receivers drawn at random (hidden rate and burst, the stage and wording of
# over-rate refusals, lock-outs that attempts extend, escalation, a connection cap, a hot
# mailbox, greylisting): the real delivery engine in virtual time with pacing timings scaled as
# on loopback (pause 10 s, clean interval 2 s, first retry 3 s), and beside it the same engine
# with Postfix's habits. One line per receiver, then the distribution of drain / best.
#
#   benches/random_receivers.sh            # forty receivers from a fixed seed
#   RECEIVERS=100 benches/random_receivers.sh
#   RECEIVER=7 benches/random_receivers.sh # one of them; its full report (timeline included)
#                                          # is left in target/tmp/receiver-7.json
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release -q -p weir-sim --test random_receivers random_receivers_report -- --ignored --nocapture
