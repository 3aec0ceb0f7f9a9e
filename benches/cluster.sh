#!/usr/bin/env bash
# Cluster mode, side by side in one run: aggregate durable SendEmail/s (SigV4, fsync'd spool)
# of the embedded single node, then of 1, 2 and 3 nodes sharing one redis-server; each node
# gets its own weir-loadgen. All on this machine, so the nodes share its cores. Then the cost of
# one quota decision in Redis against the pure engine in process.
#
#   benches/cluster.sh [CONCURRENCY_PER_NODE] [SECONDS]
#
# Needs: redis-server (apt), a release build (the script builds it).
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
CONC=${1:-64}
SECS=${2:-8}

cargo build --release -q -p weir -p weir-loadgen
cargo build --release -q -p weir-cluster --example decision_cost
WEIR=target/release/weir
LOAD=target/release/weir-loadgen
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" "${redis_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

redis_port=$(free_port)
redis_pass=bench-$RANDOM$RANDOM
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --requirepass "$redis_pass" \
  --dir "$work" >/dev/null 2>&1 & redis_pid=$!
$WEIR cluster keygen > "$work/cluster.key"; chmod 600 "$work/cluster.key"
wait_port "$redis_port"

load() { # URL LABEL -> one JSON line
  $LOAD --label "$2" --endpoint "$1" --access-key "$akid" --secret "$secret" \
    --concurrency "$CONC" --duration "$SECS" --from sender@bench.test --to rcpt@bench.test
}

report() { # LABEL JSON...
  python3 - "$@" <<'PY'
import json, sys
label, outs = sys.argv[1], [json.loads(x) for x in sys.argv[2:]]
total = sum(o["per_second"] for o in outs)
errors = sum(o["errors"] for o in outs)
p50 = max(o["p50_ms"] for o in outs)
print(json.dumps({"label": label, "nodes": len(outs), "per_second": round(total), "errors": errors, "p50_ms": p50}))
PY
}

# Embedded: the default single node.
WEIR_LOG=error start_api_weir "$WEIR" "$work/embedded" --smtp 127.0.0.1:0 --smtps 127.0.0.1:0 --no-delivery
pids+=("$weir_pid")
embedded=$(report embedded "$(load "$weir_url" embedded)")
echo "$embedded"
kill "$weir_pid"; wait "$weir_pid" 2>/dev/null || true

results=("$embedded")
for n in 1 2 3; do
  redis-cli -p "$redis_port" --no-auth-warning -a "$redis_pass" FLUSHALL >/dev/null
  urls=()
  for i in $(seq "$n"); do
    dir="$work/c$n-$i"
    mkdir -p "$dir"
  printf '[cluster]\nredis = "redis://:%s@127.0.0.1:%s/"\nnode = "n%s"\nkey_file = "%s"\n' \
    "$redis_pass" "$redis_port" "$i" "$work/cluster.key" > "$dir.toml"
    WEIR_LOG=error $WEIR serve --data-dir "$dir" --http 127.0.0.1:0 --smtp 127.0.0.1:0 --smtps 127.0.0.1:0 \
      --no-delivery --config "$dir.toml" & pids+=($!)
    for _ in $(seq 200); do [ -f "$dir/server.json" ] && break; sleep 0.05; done
    urls+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$dir/server.json")")
  done
  # One account, made on the first node; the others learn it from the catalog stream.
  creds=$($WEIR account create bench --json --data-dir "$work/c$n-1")
  akid=$(echo "$creds" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_key_id"])')
  secret=$(echo "$creds" | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret_access_key"])')
  $WEIR account quota bench --region us-east-1 --production --max-24h -1 --max-rate -1 --data-dir "$work/c$n-1" >/dev/null
  $WEIR identity add bench --region us-east-1 bench.test --verified --data-dir "$work/c$n-1" >/dev/null
  sleep 1
  outs=()
  lpids=()
  for i in $(seq "$n"); do load "${urls[$((i - 1))]}" "n$i" > "$work/out-$n-$i" & lpids+=($!); done
  wait "${lpids[@]}"
  for i in $(seq "$n"); do outs+=("$(cat "$work/out-$n-$i")"); done
  r=$(report "cluster" "${outs[@]}")
  echo "$r"
  results+=("$r")
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  pids=()
done

python3 - "${results[@]}" <<'PY'
import json, sys
rs = [json.loads(x) for x in sys.argv[1:]]
base = rs[0]["per_second"]
for r in rs:
    print(f"{r['label']:9} {r['nodes']} node(s): {r['per_second']:6d}/s  ({r['per_second'] / base:.2f}x embedded)  "
          f"p50 {r['p50_ms']:.1f} ms  errors {r['errors']}")
PY

# The decision itself: Redis round trip + Lua vs the pure engine, sequential and 64 at once.
target/release/examples/decision_cost "redis://:$redis_pass@127.0.0.1:$redis_port/" 20000
