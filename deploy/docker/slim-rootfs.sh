#!/bin/sh
# Slim a copy of the shared Debian base (ktrdr-base:bookworm, which also carries the PostgreSQL
# server for the db image) down to what an app image needs, offline (removal needs no mirror).
#
#   slim-rootfs.sh PACKAGE...    keep PACKAGE... (plus Debian's required/important/essential
#                                set and their dependencies); purge every other package
#
# Then drop package caches, docs, man pages and translations. Only useful before a
# `COPY --from=<this stage> / /` into a `FROM scratch` stage: deleting files in a later layer
# of the same image would not make it any smaller.
set -eu

[ "$#" -gt 0 ] || { echo "usage: $0 PACKAGE..." >&2; exit 2; }
export DEBIAN_FRONTEND=noninteractive

# postgresql-common protects postgresql-* from autoremove (APT::NeverAutoRemove); lift that.
rm -f /etc/apt/apt.conf.d/*autoremove-postgresql*

# Mark everything "automatically installed" except what we keep, then let apt remove what
# nothing kept depends on (recommends and suggests do not count).
keep=$(dpkg-query -W -f '${Package} ${Priority} ${Essential}\n' \
    | awk '$2 == "required" || $2 == "important" || $3 == "yes" { print $1 }')
# shellcheck disable=SC2046,SC2086
apt-mark auto $(dpkg-query -W -f '${Package}\n') >/dev/null
# shellcheck disable=SC2086
apt-mark manual "$@" $keep >/dev/null
apt-get autoremove --purge -y -q \
    -o APT::AutoRemove::RecommendsImportant=false \
    -o APT::AutoRemove::SuggestsImportant=false \
    -o Dpkg::Use-Pty=0 >/tmp/slim-rootfs.log 2>&1 || { cat /tmp/slim-rootfs.log >&2; exit 1; }
echo "slim-rootfs: purged $(awk '/^Removing [a-z0-9]/ { print $2 }' /tmp/slim-rootfs.log | sort -u | tr '\n' ' ')" >&2
rm -f /tmp/slim-rootfs.log

rm -rf /var/cache/apt/archives/*.deb /var/cache/apt/*.bin /var/lib/apt/lists/* \
    /var/cache/debconf/*-old /var/lib/dpkg/*-old /var/log/*.log /var/log/apt/* \
    /usr/share/doc/* /usr/share/man/* /usr/share/info/* /var/lib/postgresql
find /usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
