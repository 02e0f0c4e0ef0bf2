#!/usr/bin/env bash
# Ensure a Docker engine with Compose v2 and buildx is reachable, installing one if needed.
#
# Idempotent: when `docker info` works and `docker compose version` reports v2, it does nothing.
# Otherwise (root on Debian bookworm only) it:
#   1. installs Debian's docker.io engine (plus busybox-static and debootstrap, used to build
#      images with no registry);
#   2. fetches Compose v2 and buildx from the next Debian release's .deb files through a private
#      apt configuration (the system's sources are never changed), unpacks them with dpkg -x and
#      copies the CLI plugins into /usr/local/lib/docker/cli-plugins;
#   3. starts dockerd in the background and waits until it answers.
# Every action it takes is said on stderr, prefixed with "ensure-docker:".
#
# Step 3 is about the main engine alone: the dockerd on Docker's default socket and pid file
# (/var/run/docker.sock, /var/run/docker.pid). The project's other engines (the ssh one of
# ensure-remote-engine.sh, the Swarm one of ensure-swarm-engine.sh) are dockerd processes too,
# each with its own socket and pid file: they are never taken for it, so a running one neither
# hides a stopped main engine nor keeps its stale pid file.
set -euo pipefail

say() { printf 'ensure-docker: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
# apt's own chatter goes to a log, shown only when a command fails.
quietly() {
    if ! "$@" >>"$APT_LOG" 2>&1; then
        tail -n 40 "$APT_LOG" >&2
        die "failed: $* (full output in $APT_LOG)"
    fi
}

PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
STATE_DIR=/var/lib/reconciler-engine
DOCKERD_LOG=/var/log/reconciler-dockerd.log
APT_LOG=/var/log/reconciler-engine-apt.log
NEXT_SUITE=trixie

compose_is_v2() {
    local version
    version=$(docker compose version --short 2>/dev/null) || return 1
    [[ "$version" == 2.* || "$version" == v2.* ]]
}

engine_answers() { docker info >/dev/null 2>&1; }

if command -v docker >/dev/null 2>&1 && engine_answers && compose_is_v2 \
    && docker buildx version >/dev/null 2>&1; then
    say "engine reachable, compose $(docker compose version --short), buildx present: nothing to do"
    exit 0
fi

[[ $(id -u) -eq 0 ]] || die "no usable Docker engine, and installing one needs root"
[[ -r /etc/debian_version ]] || die "no usable Docker engine, and this script installs one only on Debian"

apt_updated=0
apt_update_once() {
    if [[ $apt_updated -eq 0 ]]; then
        say "apt-get update"
        quietly apt-get update
        apt_updated=1
    fi
}

# 1. Engine and offline image tools from the system's own release.
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
[[ -x /bin/busybox ]] || missing+=(busybox-static)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [[ ${#missing[@]} -gt 0 ]]; then
    apt_update_once
    say "installing ${missing[*]}"
    quietly env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
else
    say "docker.io, busybox-static and debootstrap already installed"
fi

# 2. Compose v2 and buildx CLI plugins from the next release's packages.
system_mirror() {
    # The machine's own Debian mirror: the first URI serving the system's main suite.
    local uri=""
    if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
        uri=$(awk '/^URIs:/ {u=$2} /^Suites:/ && u != "" && $0 !~ /security/ {print u; exit}' \
            /etc/apt/sources.list.d/*.sources)
    fi
    if [[ -z "$uri" && -r /etc/apt/sources.list ]]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ && $0 !~ /\[/ {print $2; exit}' /etc/apt/sources.list)
    fi
    [[ -n "$uri" ]] || die "cannot find the system's Debian mirror in /etc/apt"
    printf '%s\n' "${uri%/}"
}

install_plugin() {
    local package=$1 plugin=$2
    if [[ -x "$PLUGIN_DIR/$plugin" ]]; then
        say "$plugin plugin already in $PLUGIN_DIR"
        return
    fi
    local apt_dir="$STATE_DIR/apt"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/debs"
    local mirror
    mirror=$(system_mirror)
    printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
        "$mirror" "$NEXT_SUITE" >"$apt_dir/sources.list"
    local apt_opts=(
        -o "Dir::Etc::SourceList=$apt_dir/sources.list"
        -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::State::Lists=$apt_dir/lists"
        -o "Dir::Cache::Archives=$apt_dir/archives"
        -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache="
        -o "APT::Default-Release=$NEXT_SUITE"
        -o "APT::Sandbox::User=root"
    )
    if [[ ! -e "$apt_dir/lists/.updated" ]]; then
        say "reading the $NEXT_SUITE package list into a private apt directory ($apt_dir)"
        quietly apt-get "${apt_opts[@]}" update
        touch "$apt_dir/lists/.updated"
    fi
    say "downloading $package from $NEXT_SUITE"
    (cd "$apt_dir/debs" && quietly apt-get "${apt_opts[@]}" download "$package")
    local deb
    deb=$(ls -t "$apt_dir/debs/${package}"_*.deb | head -n 1)
    local unpack="$apt_dir/unpack-$package"
    rm -rf "$unpack"
    dpkg -x "$deb" "$unpack"
    local found
    found=$(find "$unpack" -path "*/cli-plugins/$plugin" -type f | head -n 1)
    [[ -n "$found" ]] || die "$deb holds no cli-plugins/$plugin"
    mkdir -p "$PLUGIN_DIR"
    install -m 0755 "$found" "$PLUGIN_DIR/$plugin"
    say "installed $PLUGIN_DIR/$plugin from $(basename "$deb")"
}

install_plugin docker-compose docker-compose
install_plugin docker-buildx docker-buildx

# 3. The daemon: the main engine, found by its pid file or its socket, never by name.
MAIN_SOCKET=/var/run/docker.sock
MAIN_PIDFILE=/var/run/docker.pid

main_answers() { docker --host "unix://$MAIN_SOCKET" info >/dev/null 2>&1; }

is_dockerd() { [[ $1 =~ ^[0-9]+$ ]] && [[ $(cat "/proc/$1/comm" 2>/dev/null) == dockerd ]]; }

# The main engine's dockerd: the pid in its pid file when that process is a dockerd, else the
# dockerd listening on its socket (as bound, or as /run/docker.sock through the /var/run link);
# prints nothing when there is none.
main_dockerd_pid() {
    local pid=""
    [[ -s $MAIN_PIDFILE ]] && pid=$(<"$MAIN_PIDFILE")
    if is_dockerd "$pid"; then
        printf '%s\n' "$pid"
        return
    fi
    command -v ss >/dev/null 2>&1 || return 0
    ss -xlpnH 2>/dev/null | awk -v sock="$MAIN_SOCKET" -v real="$(readlink -f "$MAIN_SOCKET")" '
        ($5 == sock || $5 == real) && /"dockerd",pid=/ {
            match($0, /"dockerd",pid=[0-9]+/)
            print substr($0, RSTART + 14, RLENGTH - 14)
            exit
        }'
}

dockerd_running() { [[ -n $(main_dockerd_pid) ]]; }
start_dockerd() {
    # A daemon killed without cleanup leaves its pid file, which blocks the next start. Only
    # called when no main dockerd runs: the pid in it is not the main engine's.
    if [[ -e $MAIN_PIDFILE ]]; then
        say "removing stale $MAIN_PIDFILE (no main dockerd running)"
        rm -f "$MAIN_PIDFILE"
    fi
    say "starting dockerd (log: $DOCKERD_LOG)"
    # containerd is started by dockerd itself when no system containerd runs.
    setsid nohup dockerd --iptables=false --ip6tables=false >"$DOCKERD_LOG" 2>&1 </dev/null &
}

if main_answers; then
    say "engine already answering on $MAIN_SOCKET"
else
    if dockerd_running; then
        say "the main dockerd (pid $(main_dockerd_pid)) is running but not answering yet; waiting"
    else
        start_dockerd
    fi
    starts=1
    for _ in $(seq 1 120); do
        main_answers && break
        # A dockerd seen while it was dying, or one that crashed at start: start it (once more).
        if ! dockerd_running && [[ $starts -lt 2 ]]; then
            sleep 1
            dockerd_running || { start_dockerd; starts=$((starts + 1)); }
        fi
        sleep 0.5
    done
    main_answers || { tail -n 30 "$DOCKERD_LOG" >&2 || true; die "dockerd did not answer within 60 s"; }
    say "engine answering: server $(docker --host "unix://$MAIN_SOCKET" version --format '{{.Server.Version}}')"
fi

compose_is_v2 || die "docker compose does not report v2 after install"
say "ready: compose $(docker compose version --short), $(docker buildx version | cut -d' ' -f1-2)"
