#!/usr/bin/env bash
# Ensure a headless Chromium (Debian's `chromium` package) for the test that opens the HTML
# report in a browser. Prints the browser's path as its last line.
#
# Idempotent: a chromium already on PATH is used as it is. Otherwise, as root on Debian, it is
# installed with apt-get (no recommended packages); each action is said on stderr, prefixed
# with "ensure-chromium:", and apt's output is kept in /var/log/reconciler-chromium-apt.log.
set -euo pipefail

say() { printf 'ensure-chromium: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

for name in chromium chromium-browser; do
    if path=$(command -v "$name"); then
        echo "$path"
        exit 0
    fi
done

[[ $(id -u) -eq 0 ]] || die "no chromium on PATH, and installing Debian's needs root"
command -v apt-get >/dev/null || die "no chromium on PATH, and no apt-get to install Debian's"
LOG=/var/log/reconciler-chromium-apt.log
say "installing Debian's chromium (apt-get install --no-install-recommends; log: $LOG)"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q --no-install-recommends chromium >"$LOG" 2>&1; then
    say "package lists may be stale: apt-get update, then again"
    apt-get update -q >>"$LOG" 2>&1 || die "apt-get update failed (see $LOG)"
    apt-get install -y -q --no-install-recommends chromium >>"$LOG" 2>&1 \
        || die "apt-get install chromium failed (see $LOG)"
fi
path=$(command -v chromium) || die "chromium installed but not on PATH"
say "ready: $("$path" --version 2>/dev/null || echo "$path")"
echo "$path"
