#!/usr/bin/env bash
# Ensure a SECOND Docker engine runs on this machine, reachable only over SSH on loopback, and
# print its URL (ssh://root@127.0.0.1:PORT) as the last line of stdout. For tests of remote
# engines (`engine:` in a state) with no second machine.
#
# Idempotent: when `docker -H URL info` answers, it does nothing but print the URL.
# Otherwise (root on Debian only) it:
#   1. installs Debian's openssh-server when sshd is missing (the system's sshd service is not
#      started or configured: this script runs its own sshd);
#   2. starts a second dockerd that cannot disturb the first one (CI's /var/run/docker.sock):
#      its own --data-root, --exec-root (so its own managed containerd, under it), --pidfile,
#      unix socket ($SOCKET), configuration file and identity key (so its own engine ID), its
#      own default bridge ($BRIDGE, 10.214.0.0/24, created here: docker0 is the first one's),
#      no iptables rules, and its own address pool for compose's networks (10.213.0.0/16, clear
#      of the first engine's); the host name (`docker info`'s Name) is the machine's, shared;
#   3. generates a host key and a client key (under $STATE_DIR, never printed), and starts its
#      own sshd on 127.0.0.1:$PORT only (public key authentication only, for the user running
#      this script, who is allowed in as root);
#   4. makes `docker -H ssh://root@127.0.0.1:$PORT ...` work non-interactively for that user:
#      an `ssh_config` block in ~/.ssh/config (between marker lines, for this address and port
#      only) names the client key and a known_hosts file holding the generated host key, so
#      host key checking stays strict and nothing is disabled globally.
#
# How `docker system dial-stdio` (what the docker CLI runs on the far side of ssh) finds the
# second engine: sshd's own `SetEnv DOCKER_HOST=unix://$SOCKET` in this sshd's config. It is set
# by the server for every session it starts, so it needs no user environment file
# (`PermitUserEnvironment` would let any key holder set any variable) and no ForceCommand
# wrapper (which would have to re-parse the client's command); the client cannot override it.
#
# --stop: stops this sshd and the second engine (and its containerd) and removes their state,
# keys, the ~/.ssh/config block; the first engine is untouched.
# Every action it takes is said on stderr, prefixed with "ensure-remote-engine:".
set -euo pipefail

say() { printf 'ensure-remote-engine: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

PORT=${RECONCILER_REMOTE_SSH_PORT:-18522}
STATE_DIR=/var/lib/reconciler-remote
RUN_DIR=/var/run/reconciler-remote
SOCKET=$RUN_DIR/docker.sock
DOCKERD_PID=$RUN_DIR/dockerd.pid
SSHD_PID=$RUN_DIR/sshd.pid
DOCKERD_LOG=/var/log/reconciler-remote-dockerd.log
SSHD_LOG=/var/log/reconciler-remote-sshd.log
APT_LOG=/var/log/reconciler-remote-apt.log
SSH_DIR=$STATE_DIR/ssh
CLIENT_KEY=$SSH_DIR/client_ed25519
HOST_KEY=$SSH_DIR/host_ed25519
KNOWN_HOSTS=$SSH_DIR/known_hosts
SSHD_CONFIG=$SSH_DIR/sshd_config
# ssh reads ~/.ssh from the password database, whatever $HOME says.
USER_HOME=$(getent passwd "$(id -u)" | cut -d: -f6)
USER_SSH_CONFIG=$USER_HOME/.ssh/config
MARK_BEGIN="# reconciler-remote-engine begin (managed by deploy/engine/ensure-remote-engine.sh)"
MARK_END="# reconciler-remote-engine end"
URL="ssh://root@127.0.0.1:$PORT"
BRIDGE=reconciler-rm0
BRIDGE_CIDR=10.214.0.1/24

pid_alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
local_engine_answers() { DOCKER_HOST="unix://$SOCKET" docker info >/dev/null 2>&1; }
remote_answers() { docker -H "$URL" info >/dev/null 2>&1; }

remove_ssh_config_block() {
    [[ -f "$USER_SSH_CONFIG" ]] || return 0
    if grep -qF "$MARK_BEGIN" "$USER_SSH_CONFIG"; then
        local kept
        kept=$(awk -v b="$MARK_BEGIN" -v e="$MARK_END" \
            '$0 == b {skip=1; next} $0 == e {skip=0; next} !skip' "$USER_SSH_CONFIG")
        printf '%s\n' "$kept" >"$USER_SSH_CONFIG"
    fi
}

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
    stop_pid "$SSHD_PID" sshd
    if local_engine_answers; then
        # Containers would keep their mounts under the data root: remove them first.
        ids=$(DOCKER_HOST="unix://$SOCKET" docker ps -aq)
        if [[ -n "$ids" ]]; then
            say "removing the second engine's containers"
            # shellcheck disable=SC2086 # one id per word
            DOCKER_HOST="unix://$SOCKET" docker rm -f $ids >/dev/null || true
        fi
    fi
    stop_pid "$DOCKERD_PID" "the second dockerd"
    # Its managed containerd exits with it; a leftover one (dockerd killed) is stopped by pid.
    stop_pid "$RUN_DIR/exec/containerd/containerd.pid" "the second engine's containerd"
    remove_ssh_config_block
    if ip link show "$BRIDGE" >/dev/null 2>&1; then
        say "removing bridge $BRIDGE"
        ip link delete "$BRIDGE" type bridge || true
    fi
    if [[ -d "$STATE_DIR" || -d "$RUN_DIR" ]]; then
        say "removing $STATE_DIR and $RUN_DIR"
        # Mounts left by a killed engine would make rm fail: unmount what lies under them.
        { grep -oE " ($STATE_DIR|$RUN_DIR)/[^ ]*" /proc/mounts || true; } | sort -r | while read -r mnt; do
            umount -l "$mnt" 2>/dev/null || true
        done
        rm -rf "$STATE_DIR" "$RUN_DIR"
    fi
    say "stopped"
    exit 0
fi

if remote_answers; then
    say "remote engine answering at $URL: nothing to do"
    printf '%s\n' "$URL"
    exit 0
fi

[[ $(id -u) -eq 0 ]] || die "starting a second engine and an sshd needs root"
[[ -r /etc/debian_version ]] || die "this script installs openssh-server only on Debian"
command -v dockerd >/dev/null 2>&1 || die "no dockerd: run deploy/engine/ensure-docker.sh first"

# 1. sshd.
if [[ ! -x /usr/sbin/sshd ]]; then
    say "apt-get update"
    apt-get update >>"$APT_LOG" 2>&1 || { tail -n 30 "$APT_LOG" >&2; die "apt-get update failed"; }
    say "installing openssh-server (its system service is left alone)"
    if ! env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        openssh-server >>"$APT_LOG" 2>&1; then
        tail -n 30 "$APT_LOG" >&2
        die "installing openssh-server failed (full output in $APT_LOG)"
    fi
else
    say "openssh-server already installed"
fi

mkdir -p "$STATE_DIR" "$RUN_DIR" "$SSH_DIR" /run/sshd
chmod 0700 "$STATE_DIR" "$SSH_DIR"

# 2. The second engine.
if local_engine_answers; then
    say "second engine already answering on $SOCKET"
else
    if ! pid_alive "$DOCKERD_PID"; then
        rm -f "$DOCKERD_PID"
        # Its default bridge (builds' RUN steps use it): its own interface and subnet, as
        # docker0 is the first engine's.
        if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
            say "creating bridge $BRIDGE ($BRIDGE_CIDR)"
            ip link add "$BRIDGE" type bridge
            ip addr add "$BRIDGE_CIDR" dev "$BRIDGE"
        fi
        ip link set "$BRIDGE" up
        say "starting the second dockerd on $SOCKET (log: $DOCKERD_LOG)"
        # Its own configuration file (/etc/docker/daemon.json is the first engine's) and its
        # own identity key (/etc/docker/key.json would give both engines one ID).
        printf '{"deprecated-key-path": "%s"}\n' "$STATE_DIR/key.json" >"$STATE_DIR/daemon.json"
        setsid nohup dockerd \
            --config-file "$STATE_DIR/daemon.json" \
            --host "unix://$SOCKET" \
            --data-root "$STATE_DIR/docker" \
            --exec-root "$RUN_DIR/exec" \
            --pidfile "$DOCKERD_PID" \
            --bridge "$BRIDGE" --iptables=false --ip6tables=false \
            --default-address-pool base=10.213.0.0/16,size=24 \
            --cgroup-parent reconciler-remote \
            >"$DOCKERD_LOG" 2>&1 </dev/null &
    else
        say "second dockerd running but not answering yet; waiting"
    fi
    for _ in $(seq 1 120); do
        local_engine_answers && break
        sleep 0.5
    done
    local_engine_answers || { tail -n 30 "$DOCKERD_LOG" >&2 || true; die "the second dockerd did not answer within 60 s"; }
    say "second engine answering: server $(DOCKER_HOST="unix://$SOCKET" docker version --format '{{.Server.Version}}')"
fi

# 3. Keys and sshd.
if [[ ! -s "$HOST_KEY" ]]; then
    say "generating the sshd host key"
    ssh-keygen -q -t ed25519 -N '' -C reconciler-remote-host -f "$HOST_KEY"
fi
if [[ ! -s "$CLIENT_KEY" ]]; then
    say "generating the client key for $(id -un)"
    ssh-keygen -q -t ed25519 -N '' -C "reconciler-remote-client-$(id -un)" -f "$CLIENT_KEY"
fi
cp "$CLIENT_KEY.pub" "$SSH_DIR/authorized_keys"
chmod 0600 "$SSH_DIR/authorized_keys"
printf '[127.0.0.1]:%s %s\n' "$PORT" "$(cut -d' ' -f1-2 "$HOST_KEY.pub")" >"$KNOWN_HOSTS"

cat >"$SSHD_CONFIG" <<EOF
# Written by deploy/engine/ensure-remote-engine.sh: an sshd for the second engine only.
ListenAddress 127.0.0.1
Port $PORT
HostKey $HOST_KEY
PidFile $SSHD_PID
AuthorizedKeysFile $SSH_DIR/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowTcpForwarding no
X11Forwarding no
PermitTTY no
PrintMotd no
MaxStartups 100:30:200
SetEnv DOCKER_HOST=unix://$SOCKET
EOF

if pid_alive "$SSHD_PID"; then
    say "sshd already running (pid $(cat "$SSHD_PID")): reloading its configuration"
    kill -HUP "$(cat "$SSHD_PID")"
else
    rm -f "$SSHD_PID"
    /usr/sbin/sshd -t -f "$SSHD_CONFIG" || die "sshd rejects $SSHD_CONFIG"
    say "starting sshd on 127.0.0.1:$PORT (log: $SSHD_LOG)"
    /usr/sbin/sshd -f "$SSHD_CONFIG" -E "$SSHD_LOG"
fi

# 4. The client side, for the user running this script.
mkdir -p "$USER_HOME/.ssh"
chmod 0700 "$USER_HOME/.ssh"
touch "$USER_SSH_CONFIG"
remove_ssh_config_block
{
    printf '%s\n' "$MARK_BEGIN"
    printf 'Match host 127.0.0.1 exec "test %%p = %s"\n' "$PORT"
    printf '    IdentityFile %s\n' "$CLIENT_KEY"
    printf '    IdentitiesOnly yes\n'
    printf '    UserKnownHostsFile %s\n' "$KNOWN_HOSTS"
    printf '    StrictHostKeyChecking yes\n'
    printf '    BatchMode yes\n'
    printf '%s\n' "$MARK_END"
    cat "$USER_SSH_CONFIG"
} >"$USER_SSH_CONFIG.new"
mv "$USER_SSH_CONFIG.new" "$USER_SSH_CONFIG"
chmod 0600 "$USER_SSH_CONFIG"

for _ in $(seq 1 40); do
    remote_answers && break
    sleep 0.25
done
if ! remote_answers; then
    docker -H "$URL" info >&2 || true
    tail -n 20 "$SSHD_LOG" >&2 || true
    die "docker -H $URL info does not answer"
fi
say "ready: $URL (server $(docker -H "$URL" version --format '{{.Server.Version}}'))"
printf '%s\n' "$URL"
