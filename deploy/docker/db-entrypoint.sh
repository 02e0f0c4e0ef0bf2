#!/bin/sh
# Entrypoint of ktrdr-db (Debian bookworm's PostgreSQL 15, no registry image).
#
# As root: make PGDATA and the socket directory belong to postgres, then re-exec as postgres.
# As postgres, on an empty PGDATA (fresh named volume): initdb, set the superuser password from
# POSTGRES_PASSWORD, create role $POSTGRES_USER (default ktrdr) and database $POSTGRES_DB
# (default ktrdr), and allow password (scram-sha-256) logins from the network.
# Then exec postgres in the foreground, listening on all addresses.
set -eu

PGBIN=/usr/lib/postgresql/15/bin
PGDATA=${PGDATA:-/var/lib/postgresql/data}
POSTGRES_USER=${POSTGRES_USER:-ktrdr}
POSTGRES_DB=${POSTGRES_DB:-ktrdr}
SOCKET_DIR=/run/postgresql
export PGDATA

say() { printf 'db-entrypoint: %s\n' "$*" >&2; }

# Anything but "postgres ..." (e.g. "bash") runs as given.
if [ "${1:-postgres}" != postgres ]; then
    exec "$@"
fi
[ "$#" -gt 0 ] && shift

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" "$SOCKET_DIR"
    chown postgres:postgres "$SOCKET_DIR"
    [ "$(stat -c %U "$PGDATA")" = postgres ] || chown -R postgres:postgres "$PGDATA"
    chmod 0700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" postgres "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        say "error: PGDATA ($PGDATA) is empty and POSTGRES_PASSWORD is not set"
        exit 1
    fi
    say "initialising a new cluster in $PGDATA"
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    "$PGBIN/initdb" --pgdata="$PGDATA" --username=postgres --pwfile="$pwfile" \
        --encoding=UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"

    # Temporary server on the Unix socket only: nothing can connect over TCP (and the
    # healthcheck stays red) until the database and role exist.
    "$PGBIN/pg_ctl" --pgdata="$PGDATA" --wait --silent \
        -o "-c listen_addresses='' -k $SOCKET_DIR" start
    "$PGBIN/psql" --no-psqlrc --quiet -v ON_ERROR_STOP=1 --host="$SOCKET_DIR" --username=postgres \
        --dbname=postgres -v user="$POSTGRES_USER" -v db="$POSTGRES_DB" -v pw="$POSTGRES_PASSWORD" <<'SQL'
CREATE ROLE :"user" LOGIN PASSWORD :'pw';
CREATE DATABASE :"db" OWNER :"user";
SQL
    "$PGBIN/pg_ctl" --pgdata="$PGDATA" --wait --silent -m fast stop

    {
        echo "# ktrdr canary: password logins from the compose network and published port"
        echo "host    all    all    0.0.0.0/0    scram-sha-256"
        echo "host    all    all    ::/0         scram-sha-256"
    } >> "$PGDATA/pg_hba.conf"
    say "cluster ready: database $POSTGRES_DB owned by $POSTGRES_USER"
fi

exec "$PGBIN/postgres" -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories="$SOCKET_DIR" "$@"
