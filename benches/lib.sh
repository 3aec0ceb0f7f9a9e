# Sourced by the bench scripts: loopback port helpers, and a private Postfix instance that
# relays to a sink.
#
#   free_port                 a free TCP port on 127.0.0.1
#   wait_port PORT            wait until something listens there (or fail)

#   start_postfix DIR PORT RELAY_PORT [EXTRA_MAIN_CF_LINE ...]
#
# Its own config dir, queue and log under DIR (DIR's parent must be traversable by the postfix
# user), nothing else on the machine touched. `stop_postfix DIR` stops it.

#   start_api_weir WEIR DIR [SERVE_ARG ...]
#                             start `WEIR serve` on DIR (HTTP on a free port, WEIR_LOG as set by the
#                             caller, default warn) with an unlimited production account `bench`
#                             that may send from bench.test; sets weir_pid, weir_url, akid, secret

start_api_weir() {
  local bin=$1 dir=$2 creds
  shift 2
  WEIR_LOG=${WEIR_LOG:-warn} $bin serve --data-dir "$dir" --http 127.0.0.1:0 "$@" & weir_pid=$!
  for _ in $(seq 100); do [ -f "$dir/server.json" ] && break; sleep 0.05; done
  weir_url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$dir/server.json")
  creds=$($bin account create bench --json --data-dir "$dir")
  akid=$(echo "$creds" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_key_id"])')
  secret=$(echo "$creds" | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret_access_key"])')
  $bin account quota bench --region us-east-1 --production --max-24h -1 --max-rate -1 --data-dir "$dir" >/dev/null
  $bin identity add bench --region us-east-1 bench.test --verified --data-dir "$dir" >/dev/null
}

#   relay_weir_toml SMTP_PORT SINK_PORT [DELIVERY_LINES] [MORE_TOML]
#                             a weir config that takes SMTP from loopback without AUTH (as account
#                             `bench`) and relays everything to SINK_PORT over 20 connections
relay_weir_toml() {
  cat <<TOML
[smtp]
listen = "127.0.0.1:$1"
listen_tls = "127.0.0.1:0"
trusted_networks = ["127.0.0.0/8"]
trusted_account = "bench"
max_connections_per_ip = 200
[delivery]
smarthost = "127.0.0.1:$2"
starttls = false
poll_interval_ms = 20
max_in_flight = 4000
${3:-}
[delivery.lanes.other]
max_connections = 20
messages_per_connection = 1000
recipients_per_transaction = 50
${4:-}
TOML
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() {
  for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.05; done
  echo "port $1 never opened" >&2
  [ -n "${PF:-}" ] && tail -5 "$PF/maillog" >&2 2>/dev/null
  exit 1
}

start_postfix() {
  local pf=$1 port=$2 relay=$3
  shift 3
  mkdir -p "$pf/etc" "$pf/queue" "$pf/data"
  chown postfix "$pf/data"
  {
    cat <<CF
compatibility_level = 3.6
queue_directory = $pf/queue
data_directory = $pf/data
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.localdomain
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:$relay
maillog_file = $pf/maillog
maillog_file_prefixes = /tmp
queue_minfree = 0
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
default_process_limit = 200
CF
    for line in "$@"; do echo "$line"; done
  } > "$pf/etc/main.cf"
  cat > "$pf/etc/master.cf" <<CF
127.0.0.1:$port inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
smtp      unix  - - n -  - smtp
relay     unix  - - n -  - smtp
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
CF
  # postfix(1) prints its errors only to a terminal; script(1) gives it one.
  script -qc "postfix -c $pf/etc start" /dev/null >/dev/null
}

stop_postfix() {
  [ -d "$1/etc" ] && script -qc "postfix -c $1/etc stop" /dev/null >/dev/null 2>&1 || true
}
