#!/usr/bin/env bash
# One front door against several builds of weir, rounds alternating between them in one run, so
# a change's cost is measured side by side on the same noisy machine.
#
#   benches/builds.sh api  ROUNDS SECONDS  CONCURRENCY BUILD [BUILD ...]
#   benches/builds.sh smtp ROUNDS MESSAGES SESSIONS    BUILD [BUILD ...]
#   benches/builds.sh delivery ROUNDS MESSAGES SESSIONS BUILD [BUILD ...]
#
# BUILD is a git revision (`.` for the working tree), optionally with the log level the server
# runs at: `HEAD~3`, `.:info`, `.:warn` (default warn).
#   api:  durable SendEmail over HTTP with SigV4 (weir-loadgen), accepted per second
#   smtp: durable SMTP submission from Postfix's smtp-source (1 KiB messages, connections
#         reused, trusted loopback without AUTH), messages per second
#   delivery: end-to-end relay: the same submission, delivered over 20 connections to one
#         Postfix smtp-sink; messages per second until the last is recorded delivered
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
FRONT=$1 ROUNDS=$2 SIZE=$3 CONC=$4
shift 4
cargo build --release -q -p weir -p weir-loadgen
LOAD=$PWD/target/release/weir-loadgen
work=$(mktemp -d)
chmod 755 "$work"
cleanup() {
  kill "${weir_pid:-}" "${sink_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true
  for t in "$work"/tree-*; do [ -d "$t" ] && git worktree remove --force "$t"; done
  rm -rf "$work"
}
trap cleanup EXIT
if [ "$FRONT" = delivery ]; then
  SINK=$(free_port)
  smtp-sink -u postfix 127.0.0.1:"$SINK" 1024 >/dev/null 2>&1 & sink_pid=$!
  wait_port "$SINK"
fi
delivered() { sqlite3 "file:$1/weir.db?mode=ro" "SELECT count(*) FROM recipients WHERE state = 'delivered'"; }

binary() { echo "$work/weir-$(echo "$1" | tr -c 'A-Za-z0-9\n' _)"; }
for build in "$@"; do
  rev=${build%%:*}
  [ -x "$(binary "$rev")" ] && continue
  if [ "$rev" = . ]; then
    cp target/release/weir "$(binary "$rev")"
  else
    tree=$work/tree-$(git rev-parse --short "$rev")
    git worktree add -q --detach "$tree" "$rev"
    # One target dir for all revisions: only weir's own crates are compiled again.
    CARGO_TARGET_DIR=target/bench-builds cargo build --release -q -p weir --manifest-path "$tree/Cargo.toml"
    cp target/bench-builds/release/weir "$(binary "$rev")"
  fi
done

round() {  # build -> one JSON line
  local build=$1 rev=${1%%:*} level=warn dir=$work/data-$RANDOM port t0 t1
  [[ $1 == *:* ]] && level=${1#*:}
  if [ "$FRONT" = api ]; then
    WEIR_LOG=$level start_api_weir "$(binary "$rev")" "$dir" --no-smtp --no-delivery 2>"$dir.log"
    $LOAD --label "$build" --endpoint "$weir_url" --access-key "$akid" --secret "$secret" \
      --concurrency "$CONC" --duration "$SIZE" --from sender@bench.test --to rcpt@bench.test
  elif [ "$FRONT" = delivery ]; then
    port=$(free_port)
    relay_weir_toml "$port" "$SINK" > "$dir.toml"
    WEIR_LOG=$level start_api_weir "$(binary "$rev")" "$dir" --config "$dir.toml" 2>"$dir.log"
    wait_port "$port"
    t0=$(date +%s.%N)
    smtp-source -d -s "$CONC" -m "$SIZE" -l 1024 -f sender@bench.test -t rcpt@example.net 127.0.0.1:"$port"
    until [ "$(delivered "$dir")" -ge "$SIZE" ]; do sleep 0.05; done
    t1=$(date +%s.%N)
    python3 -c "import json; print(json.dumps({'label': '$build', 'per_second': $SIZE / ($t1 - $t0)}))"
  else
    port=$(free_port)
    printf '[smtp]\nlisten = "127.0.0.1:%s"\nlisten_tls = "127.0.0.1:0"\ntrusted_networks = ["127.0.0.0/8"]\ntrusted_account = "bench"\nmax_connections_per_ip = 200\n' \
      "$port" > "$dir.toml"
    WEIR_LOG=$level start_api_weir "$(binary "$rev")" "$dir" --config "$dir.toml" --no-delivery 2>"$dir.log"
    wait_port "$port"
    t0=$(date +%s.%N)
    smtp-source -d -s "$CONC" -m "$SIZE" -l 1024 -f sender@bench.test -t rcpt@bench.test 127.0.0.1:"$port"
    t1=$(date +%s.%N)
    python3 -c "import json; print(json.dumps({'label': '$build', 'per_second': $SIZE / ($t1 - $t0)}))"
  fi
  kill "$weir_pid"; wait "$weir_pid" 2>/dev/null || true
  rm -rf "$dir"
}

results=()
for _ in $(seq "$ROUNDS"); do
  for build in "$@"; do results+=("$(round "$build")"); done
done
python3 - "${results[@]}" <<'PY'
import json, statistics, sys
rows = [json.loads(r) for r in sys.argv[1:]]
labels = list(dict.fromkeys(r["label"] for r in rows))
base = None
for label in labels:
    xs = [r["per_second"] for r in rows if r["label"] == label]
    med = statistics.median(xs)
    base = base or med
    print(f"{label}: median {med:.0f}/s ({' · '.join(f'{x:.0f}' for x in xs)}), x{med / base:.3f} of {labels[0]}")
PY
