#!/usr/bin/env bash
# Slow-client soak: a normal API and SMTP client keep sending while HOSTILE connections sit idle,
# trickle headers or bodies, or push unauthenticated 60 MB uploads; weir runs with the common
# default of 1,024 descriptors. One JSON line per phase (baseline, under attack, after).
#
#   benches/slow_clients.sh [SECONDS_PER_PHASE] [HOSTILE]
#
# Needs: boto3 (pip), a release build (the script builds it), root or enough descriptors for
# the hostile side.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-15}
HOSTILE=${2:-3000}

cargo build --release -q -p weir
WEIR=target/release/weir
work=$(mktemp -d)
cleanup() { kill "${weir_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

WEIR_LOG=warn prlimit --nofile=1024:1024 -- $WEIR serve --data-dir "$work/weir" --http 127.0.0.1:0 \
  --smtp 127.0.0.1:0 --smtps 127.0.0.1:0 --no-delivery 2>"$work/weir.log" & weir_pid=$!
for _ in $(seq 100); do [ -f "$work/weir/server.json" ] && break; sleep 0.05; done
python3 benches/slow_clients.py "$WEIR" "$work/weir" "$SECS" "$HOSTILE"
echo "weir log lines: $(wc -l <"$work/weir.log"); accept warnings: $(grep -c 'accept failed' "$work/weir.log" || true)"
