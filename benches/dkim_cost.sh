#!/usr/bin/env bash
# The cost of DKIM signing, side by side in one run: the same server relaying the same load to
# smtp-sink with the sending domain's DKIM on (keys published in a DNS zone on loopback, status
# SUCCESS, every message signed at delivery) and off, alternating rounds. Measured per round:
# SMTP ingest (smtp-source finishing N messages into weir) and end-to-end delivery (the clock
# stops when every recipient is delivered).
#
#   benches/dkim_cost.sh [ROUNDS] [N] [KEY]     # default 3 rounds, N = 10000, KEY = rsa2048
#
# Needs Debian's postfix package (smtp-source, smtp-sink) and dnslib (pip).
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
ROUNDS=${1:-3}
N=${2:-10000}
KEY=${3:-rsa2048}
cargo build --release -q -p weir
WEIR=$PWD/target/release/weir
work=$(mktemp -d /tmp/weir-dkim-bench.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
delivered() { sqlite3 "file:$1/weir.db?mode=ro" "SELECT count(*) FROM recipients WHERE state = 'delivered'"; }

SINK=$(free_port)
smtp-sink -u postfix 127.0.0.1:"$SINK" 1024 >/dev/null 2>&1 & pids+=($!)
DNS=$(free_port)
echo '{}' > "$work/zone.json"
python3 benches/dns_zone.py "$DNS" "$work/zone.json" & pids+=($!)
wait_port "$SINK"

round() {  # on|off -> "ingest_per_s delivery_per_s"
  local mode=$1 dir=$work/w-$1-$RANDOM port t0 t1 t2
  port=$(free_port)
  relay_weir_toml "$port" "$SINK" "dns_servers = [\"127.0.0.1:$DNS\"]" "$(printf '[dkim]\ncheck_interval_seconds = 1')" > "$dir.toml"
  WEIR_LOG=warn $WEIR serve --config "$dir.toml" --data-dir "$dir" --http 127.0.0.1:0 & weir_pid=$!
  pids+=($weir_pid)
  wait_port "$port"
  $WEIR account create bench --data-dir "$dir" >/dev/null
  $WEIR account quota bench --region us-east-1 --production --max-24h -1 --max-rate -1 --data-dir "$dir" >/dev/null
  $WEIR identity add bench --region us-east-1 bench.test --verified --data-dir "$dir" >/dev/null
  if [ "$mode" = on ]; then
    $WEIR identity dkim bench --region us-east-1 bench.test --key "$KEY" --data-dir "$dir" >/dev/null
    $WEIR identity dns bench --region us-east-1 bench.test --json --data-dir "$dir" | python3 -c '
import json, sys
records = {r["name"]: r["value"] for r in json.load(sys.stdin)["records"] if r["purpose"] == "DKIM"}
json.dump(records, open(sys.argv[1], "w"))' "$work/zone.json"
    until $WEIR identity dns bench --region us-east-1 bench.test --json --data-dir "$dir" | grep -q '"dkim": "SUCCESS"'; do
      sleep 0.2
    done
  fi
  t0=$(now)
  smtp-source -d -s 20 -m "$N" -l 1024 -f sender@bench.test -t rcpt@example.net 127.0.0.1:"$port"
  t1=$(now)
  until [ "$(delivered "$dir")" -ge "$N" ]; do sleep 0.05; done
  t2=$(now)
  kill "$weir_pid"; wait "$weir_pid" 2>/dev/null || true
  python3 -c "print(f'{$N / ($t1 - $t0):.0f} {$N / ($t2 - $t0):.0f}')"
}

on=(); off=()
for _ in $(seq "$ROUNDS"); do
  on+=("$(round on)"); off+=("$(round off)")
done
python3 - "$KEY" "$N" "${on[*]}" "${off[*]}" <<'PY'
import statistics, sys
key, n = sys.argv[1], sys.argv[2]
def parse(s):
    xs = list(map(float, s.split()))
    return xs[0::2], xs[1::2]
(on_in, on_del), (off_in, off_del) = parse(sys.argv[3]), parse(sys.argv[4])
med = statistics.median
fmt = lambda xs: " · ".join(f"{x:.0f}" for x in xs)
print(f"DKIM {key}, {n} x 1 KiB per round, 20 sessions in, 20 connections out")
print(f"  ingest    on {med(on_in):.0f}/s ({fmt(on_in)})  off {med(off_in):.0f}/s ({fmt(off_in)})  on/off = {med(on_in) / med(off_in):.3f}")
print(f"  delivery  on {med(on_del):.0f}/s ({fmt(on_del)})  off {med(off_del):.0f}/s ({fmt(off_del)})  on/off = {med(on_del) / med(off_del):.3f}")
PY
