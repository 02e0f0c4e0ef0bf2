#!/usr/bin/env bash
# Record the docker CLI's failures to reach an ssh:// engine into tests/facts/ssh_errors/
# (ssh-*.stderr), against the engine of deploy/engine/ensure-remote-engine.sh (started first if
# needed; left running). Each fault is made with ssh's own options through an `ssh` first on
# PATH that adds `-F <a config of the case>` (docker prints the ssh command it ran, which is
# the same either way), so the user's ~/.ssh is never changed:
#   host-key-unknown   an empty known_hosts, StrictHostKeyChecking yes
#   host-key-changed   known_hosts holding another key for [127.0.0.1]:PORT
#   publickey-refused  a freshly generated key the engine's sshd does not know
#   connection-refused a port nothing listens on
#   connection-closed  a port where a listener accepts and closes at once (a dying sshd)
# The fresh key pairs are removed at the end; only ssh's messages are kept.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$REPO/tests/facts/ssh_errors
mkdir -p "$OUT"
URL=$(bash "$REPO/deploy/engine/ensure-remote-engine.sh")
PORT=${URL##*:}
DEAD_PORT=$((PORT + 1))
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"; [[ -n "${LISTENER:-}" ]] && kill "$LISTENER" 2>/dev/null || true' EXIT

REAL_SSH=$(command -v ssh)
mkdir -p "$WORK/bin"
cat >"$WORK/bin/ssh" <<EOF
#!/bin/sh
exec "$REAL_SSH" -F "\$SSH_CASE_CONFIG" "\$@"
EOF
chmod +x "$WORK/bin/ssh"

ssh-keygen -q -t ed25519 -N '' -f "$WORK/stranger" -C stranger
ssh-keygen -q -t ed25519 -N '' -f "$WORK/other_host" -C other-host
: >"$WORK/empty_known_hosts"
printf '[127.0.0.1]:%s %s\n' "$PORT" "$(cut -d' ' -f1-2 "$WORK/other_host.pub")" >"$WORK/wrong_known_hosts"
CLIENT_KEY=/var/lib/reconciler-remote/ssh/client_ed25519
KNOWN=/var/lib/reconciler-remote/ssh/known_hosts

config() {  # config NAME KNOWN_HOSTS IDENTITY
    cat >"$WORK/$1.config" <<EOF
Host *
    IdentityFile $3
    IdentitiesOnly yes
    UserKnownHostsFile $2
    StrictHostKeyChecking yes
    BatchMode yes
EOF
}
config host-key-unknown "$WORK/empty_known_hosts" "$CLIENT_KEY"
config host-key-changed "$WORK/wrong_known_hosts" "$CLIENT_KEY"
config publickey-refused "$KNOWN" "$WORK/stranger"
config plain "$KNOWN" "$CLIENT_KEY"

record() {  # record CASE CONFIG URL ARGS...
    local name=$1 cfg=$2 url=$3
    shift 3
    local rc=0
    SSH_CASE_CONFIG="$WORK/$cfg.config" PATH="$WORK/bin:$PATH" \
        docker -H "$url" "$@" >/dev/null 2>"$OUT/ssh-$name.stderr" || rc=$?
    echo "ssh-$name: exit $rc"
}

record host-key-unknown host-key-unknown "$URL" info
record host-key-changed host-key-changed "$URL" info
record publickey-refused publickey-refused "$URL" info
record connection-refused plain "ssh://root@127.0.0.1:$DEAD_PORT" container ls
python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8)
while True:
    c, _ = s.accept(); c.close()
' "$DEAD_PORT" &
LISTENER=$!
sleep 0.5
record connection-closed plain "ssh://root@127.0.0.1:$DEAD_PORT" container ls
printf 'services:\n  web:\n    image: web:1\n' >"$WORK/compose.yml"
record compose-connection-closed plain "ssh://root@127.0.0.1:$DEAD_PORT" \
    compose --file "$WORK/compose.yml" --project-name sshfx up --detach --no-build --pull never
