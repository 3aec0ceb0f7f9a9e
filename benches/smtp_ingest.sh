#!/usr/bin/env bash
# Durable SMTP ingest, side by side in one run: weir, Postfix (a private instance that queues
# durably and holds the mail: defer_transports = smtp), and smtp-sink (accepts and discards:
# the no-durability ceiling). Load from Postfix's own smtp-source, 1 KiB and 20 KiB messages,
# 1, 10 and 50 sessions, connections reused (-d).
#
#   benches/smtp_ingest.sh [SCALE]     # SCALE multiplies the message counts (default 1)
#
# Needs Debian's postfix package (smtp-source, smtp-sink) and root (Postfix's own users).
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
SCALE=${1:-1}
cargo build --release -q -p weir
WEIR=$PWD/target/release/weir
work=$(mktemp -d /tmp/weir-smtp-bench.XXXXXX)
chmod 755 "$work"   # Postfix daemons run as the postfix user
PF=$work/postfix
cleanup() {
  stop_postfix "$PF"
  kill "${weir_pid:-}" "${sink_pid:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- weir: durable spool (fsync per group commit), submissions from loopback without AUTH
WEIR_SMTP=$(free_port)
cat > "$work/weir.toml" <<TOML
[smtp]
listen = "127.0.0.1:$WEIR_SMTP"
listen_tls = "127.0.0.1:0"
trusted_networks = ["127.0.0.0/8"]
trusted_account = "bench"
max_connections_per_ip = 200
TOML
# Delivery off, as Postfix holds its mail (defer_transports): ingest alone is measured, and a
# resolver that answers NXDOMAIN for bench.test cannot make weir bounce mail during the run.
WEIR_LOG=warn $WEIR serve --config "$work/weir.toml" --data-dir "$work/weir" --http 127.0.0.1:0 --no-delivery & weir_pid=$!
for _ in $(seq 200); do [ -f "$work/weir/server.json" ] && break; sleep 0.05; done
$WEIR account create bench --data-dir "$work/weir" >/dev/null
$WEIR account quota bench --region us-east-1 --production --max-24h -1 --max-rate -1 --data-dir "$work/weir" >/dev/null
$WEIR identity add bench --region us-east-1 bench.test --verified --data-dir "$work/weir" >/dev/null

# --- smtp-sink
SINK=$(free_port)
smtp-sink -u postfix 127.0.0.1:"$SINK" 1024 >/dev/null 2>&1 & sink_pid=$!

# --- Postfix: a private instance on its own port, queue in $work, mail held after queueing
PFPORT=$(free_port)
start_postfix "$PF" "$PFPORT" "$SINK" "defer_transports = smtp"
wait_port "$PFPORT"; wait_port "$WEIR_SMTP"; wait_port "$SINK"

run() {  # target port sessions count size -> messages per second
  local port=$1 sessions=$2 count=$3 size=$4 t0 t1
  t0=$(date +%s.%N)
  smtp-source -d -s "$sessions" -m "$count" -l "$size" -f sender@bench.test -t rcpt@bench.test 127.0.0.1:"$port"
  t1=$(date +%s.%N)
  python3 -c "print(f'{$count / ($t1 - $t0):.0f}')"
}

printf '%-7s %-9s %10s %10s %10s %12s %12s\n' size sessions weir postfix smtp-sink weir/postfix weir/sink
for size in 1024 20480; do
  for sessions in 1 10 50; do
    count=$(( (sessions == 1 ? 1000 : 5000) * SCALE ))
    w=$(run "$WEIR_SMTP" "$sessions" "$count" "$size")
    p=$(run "$PFPORT" "$sessions" "$count" "$size")
    k=$(run "$SINK" "$sessions" "$count" "$size")
    printf '%-7s %-9s %10s %10s %10s %12s %12s\n' "$size" "$sessions" "$w" "$p" "$k" \
      "$(python3 -c "print(f'{$w/$p:.2f}x')")" "$(python3 -c "print(f'{$w/$k:.2f}x')")"
  done
done
spooled=$($WEIR spool count --data-dir "$work/weir")
queued=$(find "$PF/queue/deferred" "$PF/queue/active" "$PF/queue/incoming" -type f | wc -l)
echo "weir spool: $spooled messages; postfix queue: $queued messages"
