#!/usr/bin/env bash
# Ensure a THIRD Docker engine runs on this machine as a single-node Swarm manager, and print
# its URL (unix:///var/run/reconciler-swarm/docker.sock) as the last line of stdout. For tests
# of `compose.mode: swarm` with no second machine; modelled on ensure-remote-engine.sh.
#
# Neither the machine's main engine (/var/run/docker.sock) nor the ssh remote engine
# (ensure-remote-engine.sh) is ever made a Swarm: this one is a separate dockerd with
#   - its own --data-root, --exec-root (so its own managed containerd), --pidfile, unix socket,
#     configuration file and identity key (so its own engine and node ID);
#   - its own default bridge ($BRIDGE, $BRIDGE_CIDR, created here: docker0 and reconciler-rm0
#     belong to the other engines), no iptables rules;
#   - its own address pool for local networks ($LOCAL_POOL: the bridge docker_gwbridge that a
#     Swarm node makes comes from it), clear of the main engine's (172.17+, 192.168) and the
#     remote one's (10.213.0.0/16, 10.214.0.0/24);
#   - a Swarm initialised with `--advertise-addr 127.0.0.1`, its manager listening on loopback
#     only ($SWARM_PORT, not the default 2377), its overlay networks from $SWARM_POOL and its
#     VXLAN data path on $DATA_PATH_PORT (not the default 4789).
#
# Idempotent: when the engine answers and is an active Swarm manager, it only prints the URL.
# --stop: leaves the Swarm, removes its containers, stops this dockerd (and its containerd),
# removes its bridges (its own and the docker_gwbridge it made, never one that was there before)
# and its state; the other engines and docker0 are untouched.
# Every action it takes is said on stderr, prefixed with "ensure-swarm-engine:".
set -euo pipefail

say() { printf 'ensure-swarm-engine: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

STATE_DIR=/var/lib/reconciler-swarm
RUN_DIR=/var/run/reconciler-swarm
SOCKET=$RUN_DIR/docker.sock
URL="unix://$SOCKET"
DOCKERD_PID=$RUN_DIR/dockerd.pid
DOCKERD_LOG=/var/log/reconciler-swarm-dockerd.log
BRIDGE=reconciler-sw0
BRIDGE_CIDR=10.216.0.1/24
LOCAL_POOL=10.218.0.0/16
SWARM_POOL=10.217.0.0/16
SWARM_PORT=${RECONCILER_SWARM_PORT:-12377}
DATA_PATH_PORT=${RECONCILER_SWARM_DATA_PATH_PORT:-14789}
GWBRIDGE=docker_gwbridge
# Written when this script finds no docker_gwbridge before starting the engine: --stop removes
# that bridge only then (the Swarm node made it).
GWBRIDGE_OURS=$STATE_DIR/gwbridge-made-here

on_engine() { DOCKER_HOST="$URL" docker "$@"; }
engine_answers() { on_engine info >/dev/null 2>&1; }
swarm_state() { on_engine info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}' 2>/dev/null || true; }
pid_alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pid() {
    local pidfile=$1 what=$2
    if pid_alive "$pidfile"; then
        local pid
        pid=$(cat "$pidfile")
        say "stopping $what (pid $pid)"
        kill "$pid"
        for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        if kill -0 "$pid" 2>/dev/null; then
            say "$what did not stop within 30 s: killing it"
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pidfile"
}

if [[ "${1:-}" == "--stop" ]]; then
    if engine_answers; then
        if [[ $(swarm_state) == active* ]]; then
            say "leaving the Swarm (its stacks' services go with it)"
            on_engine swarm leave --force >/dev/null || true
        fi
        ids=$(on_engine ps -aq)
        if [[ -n "$ids" ]]; then
            say "removing the swarm engine's containers"
            # shellcheck disable=SC2086 # one id per word
            on_engine rm -f $ids >/dev/null || true
        fi
    fi
    stop_pid "$DOCKERD_PID" "the swarm dockerd"
    stop_pid "$RUN_DIR/exec/containerd/containerd.pid" "the swarm engine's containerd"
    if [[ -f "$GWBRIDGE_OURS" ]] && ip link show "$GWBRIDGE" >/dev/null 2>&1; then
        say "removing bridge $GWBRIDGE (made by the swarm engine)"
        ip link delete "$GWBRIDGE" type bridge || true
    fi
    if ip link show "$BRIDGE" >/dev/null 2>&1; then
        say "removing bridge $BRIDGE"
        ip link delete "$BRIDGE" type bridge || true
    fi
    if [[ -d "$STATE_DIR" || -d "$RUN_DIR" ]]; then
        say "removing $STATE_DIR and $RUN_DIR"
        # Mounts left by a killed engine (netns files, overlays) would make rm fail.
        { grep -oE " ($STATE_DIR|$RUN_DIR)/[^ ]*" /proc/mounts || true; } | sort -r | while read -r mnt; do
            umount -l "$mnt" 2>/dev/null || true
        done
        rm -rf "$STATE_DIR" "$RUN_DIR"
    fi
    say "stopped"
    exit 0
fi

if engine_answers && [[ $(swarm_state) == "active true" ]]; then
    say "swarm engine answering at $URL, an active manager: nothing to do"
    printf '%s\n' "$URL"
    exit 0
fi

[[ $(id -u) -eq 0 ]] || die "starting a third engine needs root"
command -v dockerd >/dev/null 2>&1 || die "no dockerd: run deploy/engine/ensure-docker.sh first"

mkdir -p "$STATE_DIR" "$RUN_DIR"
chmod 0700 "$STATE_DIR"

if engine_answers; then
    say "swarm engine already answering on $SOCKET"
else
    if ! pid_alive "$DOCKERD_PID"; then
        rm -f "$DOCKERD_PID"
        if ! ip link show "$GWBRIDGE" >/dev/null 2>&1; then
            touch "$GWBRIDGE_OURS"
        elif [[ ! -f "$GWBRIDGE_OURS" ]]; then
            say "note: $GWBRIDGE exists already (not made here): it will be left in place"
        fi
        if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
            say "creating bridge $BRIDGE ($BRIDGE_CIDR)"
            ip link add "$BRIDGE" type bridge
            ip addr add "$BRIDGE_CIDR" dev "$BRIDGE"
        fi
        ip link set "$BRIDGE" up
        say "starting the swarm dockerd on $SOCKET (log: $DOCKERD_LOG)"
        printf '{"deprecated-key-path": "%s"}\n' "$STATE_DIR/key.json" >"$STATE_DIR/daemon.json"
        setsid nohup dockerd \
            --config-file "$STATE_DIR/daemon.json" \
            --host "$URL" \
            --data-root "$STATE_DIR/docker" \
            --exec-root "$RUN_DIR/exec" \
            --pidfile "$DOCKERD_PID" \
            --bridge "$BRIDGE" --iptables=false --ip6tables=false \
            --default-address-pool "base=$LOCAL_POOL,size=24" \
            --cgroup-parent reconciler-swarm \
            >"$DOCKERD_LOG" 2>&1 </dev/null &
    else
        say "swarm dockerd running but not answering yet; waiting"
    fi
    for _ in $(seq 1 120); do
        engine_answers && break
        sleep 0.5
    done
    engine_answers || { tail -n 30 "$DOCKERD_LOG" >&2 || true; die "the swarm dockerd did not answer within 60 s"; }
    say "swarm engine answering: server $(on_engine version --format '{{.Server.Version}}')"
fi

case $(swarm_state) in
    "active true") say "already an active Swarm manager" ;;
    inactive*)
        say "docker swarm init (manager on 127.0.0.1:$SWARM_PORT, overlay pool $SWARM_POOL, data path port $DATA_PATH_PORT)"
        on_engine swarm init \
            --advertise-addr "127.0.0.1:$SWARM_PORT" \
            --listen-addr "127.0.0.1:$SWARM_PORT" \
            --default-addr-pool "$SWARM_POOL" --default-addr-pool-mask-length 24 \
            --data-path-port "$DATA_PATH_PORT" >/dev/null \
            || die "docker swarm init failed"
        ;;
    *) die "the swarm engine's Swarm is in state '$(swarm_state)': run $0 --stop, then again" ;;
esac

for _ in $(seq 1 40); do
    [[ $(swarm_state) == "active true" ]] && break
    sleep 0.25
done
[[ $(swarm_state) == "active true" ]] || die "the Swarm is not active: $(swarm_state)"
say "ready: $URL (server $(on_engine version --format '{{.Server.Version}}'), Swarm manager $(on_engine info --format '{{.Swarm.NodeID}}'))"
printf '%s\n' "$URL"
