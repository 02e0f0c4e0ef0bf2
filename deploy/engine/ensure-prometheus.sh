#!/usr/bin/env bash
# Ensure a Prometheus server (Debian's `prometheus` package) answers on 127.0.0.1:PORT and
# scrapes itself every second, for tests of `prometheus` checks. Prints its URL as its last line.
#
#   ensure-prometheus.sh [--port N]      start (or find running) the server
#   ensure-prometheus.sh --port N --stop  stop it and remove its data
#
# Idempotent: a server already answering on the port is left alone. The binary comes from
# Debian's prometheus package, fetched with `apt-get download` and unpacked with dpkg -x
# (nothing is installed, no service is started), like the registry's. Every action is said on
# stderr, prefixed with "ensure-prometheus:".
set -euo pipefail

say() { printf 'ensure-prometheus: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

PORT=9390
STOP=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --port) PORT=$2; shift 2 ;;
        --stop) STOP=1; shift ;;
        *) die "unknown argument $1 (see the header of $0)" ;;
    esac
done
[[ $PORT =~ ^[0-9]+$ ]] || die "--port takes a number, not $PORT"

ROOT=/var/lib/reconciler-prometheus
HERE="$ROOT/$PORT"
PIDFILE="$HERE/pid"
APT_LOG="$ROOT/apt.log"
URL="http://127.0.0.1:$PORT"
mkdir -p "$ROOT"

running() { [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
ready() { python3 -c "import urllib.request as u; u.urlopen('$URL/-/ready', timeout=2)" 2>/dev/null; }

if [[ $STOP -eq 1 ]]; then
    if running; then
        kill "$(cat "$PIDFILE")"
        say "stopped Prometheus on 127.0.0.1:$PORT"
    fi
    rm -rf "$HERE"
    exit 0
fi

if running && ready; then
    say "Prometheus already answering on 127.0.0.1:$PORT"
    echo "$URL"
    exit 0
fi

BIN="$ROOT/pkg/usr/bin/prometheus"
if [[ ! -x $BIN ]]; then
    command -v apt-get >/dev/null 2>&1 || die "needs Debian's apt to fetch prometheus"
    mkdir -p "$ROOT/debs"
    if ! (cd "$ROOT/debs" && apt-get download prometheus >>"$APT_LOG" 2>&1); then
        say "reading the package lists (apt-get update)"
        apt-get update >>"$APT_LOG" 2>&1 || { tail -n 20 "$APT_LOG" >&2; die "apt-get update failed"; }
        (cd "$ROOT/debs" && apt-get download prometheus >>"$APT_LOG" 2>&1) \
            || { tail -n 20 "$APT_LOG" >&2; die "cannot download prometheus"; }
    fi
    deb=$(ls -t "$ROOT"/debs/prometheus_*.deb | head -n 1)
    say "unpacking $(basename "$deb")"
    rm -rf "$ROOT/pkg"
    dpkg -x "$deb" "$ROOT/pkg"
fi

if running; then
    kill "$(cat "$PIDFILE")"
    for _ in $(seq 50); do running || break; sleep 0.1; done
fi
mkdir -p "$HERE/data"
cat >"$HERE/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:$PORT"]
YAML
say "starting Prometheus on 127.0.0.1:$PORT (log: $HERE/log)"
nohup "$BIN" --config.file="$HERE/prometheus.yml" --storage.tsdb.path="$HERE/data" \
    --web.listen-address="127.0.0.1:$PORT" >"$HERE/log" 2>&1 </dev/null &
echo $! >"$PIDFILE"
for _ in $(seq 300); do
    if ready; then
        say "ready: $("$BIN" --version 2>&1 | head -n 1)"
        echo "$URL"
        exit 0
    fi
    running || { tail -n 20 "$HERE/log" >&2; die "Prometheus exited at its start"; }
    sleep 0.1
done
tail -n 20 "$HERE/log" >&2
die "Prometheus did not answer on 127.0.0.1:$PORT within 30 s"
