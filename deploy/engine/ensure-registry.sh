#!/usr/bin/env bash
# Ensure a container registry (Debian's docker-registry, the reference implementation) answers
# on 127.0.0.1:PORT, for tests of registry images. Prints "127.0.0.1:PORT" as its last line.
#
#   ensure-registry.sh [--port N] [--user NAME]    start (or find running) a registry
#   ensure-registry.sh --port N --stop             stop it and remove its data
#
# With --user, the registry requires authentication: the password is read from the
# REGISTRY_PASSWORD environment variable (never from the command line) and stored bcrypt-hashed
# in an htpasswd file. The engine talks plain HTTP to it: loopback registries are insecure by
# default in dockerd, so no TLS and no daemon change is needed.
#
# Idempotent: a registry already answering on the port with the same settings is left alone.
# The binary comes from Debian's docker-registry package, fetched with `apt-get download` and
# unpacked with dpkg -x (nothing is installed, no service is started). Every action is said on
# stderr, prefixed with "ensure-registry:".
set -euo pipefail

say() { printf 'ensure-registry: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

PORT=5000
USER_NAME=""
STOP=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --port) PORT=$2; shift 2 ;;
        --user) USER_NAME=$2; shift 2 ;;
        --stop) STOP=1; shift ;;
        *) die "unknown argument $1 (see the header of $0)" ;;
    esac
done
[[ $PORT =~ ^[0-9]+$ ]] || die "--port takes a number, not $PORT"

ROOT=/var/lib/reconciler-registry
HERE="$ROOT/$PORT"
PIDFILE="$HERE/pid"
APT_LOG="$ROOT/apt.log"
mkdir -p "$ROOT"

running() { [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

if [[ $STOP -eq 1 ]]; then
    if running; then
        kill "$(cat "$PIDFILE")"
        say "stopped the registry on 127.0.0.1:$PORT"
    fi
    rm -rf "$HERE"
    exit 0
fi

# 1. The binary, from Debian's package, unpacked once.
BIN="$ROOT/pkg/usr/bin/docker-registry"
if [[ ! -x $BIN ]]; then
    command -v apt-get >/dev/null 2>&1 || die "needs Debian's apt to fetch docker-registry"
    mkdir -p "$ROOT/debs"
    if ! (cd "$ROOT/debs" && apt-get download docker-registry >>"$APT_LOG" 2>&1); then
        say "reading the package lists (apt-get update)"
        apt-get update >>"$APT_LOG" 2>&1 || { tail -n 20 "$APT_LOG" >&2; die "apt-get update failed"; }
        (cd "$ROOT/debs" && apt-get download docker-registry >>"$APT_LOG" 2>&1) \
            || { tail -n 20 "$APT_LOG" >&2; die "cannot download docker-registry"; }
    fi
    deb=$(ls -t "$ROOT"/debs/docker-registry_*.deb | head -n 1)
    say "unpacking $(basename "$deb")"
    rm -rf "$ROOT/pkg"
    dpkg -x "$deb" "$ROOT/pkg"
fi

# 2. Its configuration: storage on disk, optional htpasswd authentication.
mkdir -p "$HERE/data"
AUTH=""
if [[ -n $USER_NAME ]]; then
    [[ -n ${REGISTRY_PASSWORD:-} ]] || die "--user needs the password in REGISTRY_PASSWORD"
    # bcrypt, the only scheme the registry's htpasswd reader accepts (glibc's libxcrypt has it)
    REGISTRY_USER=$USER_NAME python3 - "$HERE/htpasswd" <<'PY'
import crypt, os, sys, warnings
warnings.simplefilter("ignore")
hashed = crypt.crypt(os.environ["REGISTRY_PASSWORD"], crypt.mksalt(crypt.METHOD_BLOWFISH))
with open(sys.argv[1], "w", encoding="utf-8") as out:
    out.write(f"{os.environ['REGISTRY_USER']}:{hashed}\n")
os.chmod(sys.argv[1], 0o600)
PY
    AUTH="auth:
  htpasswd:
    realm: reconciler-tests
    path: $HERE/htpasswd"
fi
CONFIG="version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $HERE/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
$AUTH"

if running && [[ -f $HERE/config.yml ]] && [[ $(cat "$HERE/config.yml") == "$CONFIG" ]] \
    && [[ -z $USER_NAME ]]; then
    say "registry already answering on 127.0.0.1:$PORT"
    echo "127.0.0.1:$PORT"
    exit 0
fi
if running; then
    kill "$(cat "$PIDFILE")"
    for _ in $(seq 50); do running || break; sleep 0.1; done
fi
printf '%s\n' "$CONFIG" >"$HERE/config.yml"

# 3. Start it in the background and wait until /v2/ answers (200, or 401 with auth).
say "starting docker-registry on 127.0.0.1:$PORT${USER_NAME:+ (authentication: $USER_NAME)}"
setsid "$BIN" serve "$HERE/config.yml" >>"$HERE/registry.log" 2>&1 < /dev/null &
echo $! >"$PIDFILE"
for _ in $(seq 100); do
    code=$(python3 - "$PORT" <<'PY'
import sys, urllib.error, urllib.request
try:
    print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v2/", timeout=1).status)
except urllib.error.HTTPError as error:
    print(error.code)
except OSError:
    print(0)
PY
)
    if [[ $code == 200 || $code == 401 ]]; then
        say "registry answering on 127.0.0.1:$PORT"
        echo "127.0.0.1:$PORT"
        exit 0
    fi
    running || { tail -n 20 "$HERE/registry.log" >&2; die "docker-registry exited"; }
    sleep 0.1
done
tail -n 20 "$HERE/registry.log" >&2
die "docker-registry did not answer on 127.0.0.1:$PORT within 10 s"
