#!/usr/bin/env bash
# Start a PostgreSQL 15 server on 127.0.0.1:5432 with role capkey/capkey and database capkey,
# for the store tests marked `postgres`. Idempotent: running it again changes nothing.
#
# Run as root on a Debian machine where the `postgresql` package is installed (.ci/run does so).
# Order of preference:
#   1. a server already answering on 127.0.0.1:5432        -> only make sure role and database exist
#   2. Debian's postgresql-common (pg_lsclusters/pg_ctlcluster) -> create 15/main if missing, start it
#   3. plain initdb into /tmp/capkey-pg, run as the postgres user (no postgresql-common)
set -euo pipefail

PORT=5432
HOST=127.0.0.1
VERSION=15
BIN=/usr/lib/postgresql/$VERSION/bin
FALLBACK_DIR=/tmp/capkey-pg

log() { echo "start_postgres: $*" >&2; }

as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

ready() { "$BIN/pg_isready" -q -h "$HOST" -p "$PORT"; }

wait_ready() {
    for _ in $(seq 1 60); do
        ready && return 0
        sleep 0.5
    done
    log "server did not become ready on $HOST:$PORT"
    return 1
}

if [ ! -x "$BIN/postgres" ]; then
    log "PostgreSQL $VERSION binaries not found in $BIN (apt-get install postgresql)"
    exit 1
fi

if ready; then
    log "a server already answers on $HOST:$PORT"
elif command -v pg_ctlcluster >/dev/null 2>&1; then
    if ! pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main"' | grep -q .; then
        log "creating cluster $VERSION/main"
        pg_createcluster "$VERSION" main --port "$PORT" >/dev/null
    fi
    # Listen on the loopback interface only; password (scram) login is allowed there by
    # Debian's default pg_hba.conf.
    conf_dir=/etc/postgresql/$VERSION/main/conf.d
    mkdir -p "$conf_dir"
    printf "listen_addresses = '%s'\nport = %s\n" "$HOST" "$PORT" > "$conf_dir/capkey.conf"
    chown -R postgres:postgres "$conf_dir"
    log "starting cluster $VERSION/main"
    pg_ctlcluster "$VERSION" main start || true
    wait_ready
else
    if [ ! -f "$FALLBACK_DIR/PG_VERSION" ]; then
        log "initdb into $FALLBACK_DIR"
        mkdir -p "$FALLBACK_DIR"
        chown postgres:postgres "$FALLBACK_DIR"
        as_postgres "$BIN/initdb" -D "$FALLBACK_DIR" -U postgres --auth-local=trust \
            --auth-host=scram-sha-256 >/dev/null
    fi
    mkdir -p /var/run/postgresql && chown postgres:postgres /var/run/postgresql
    log "starting server from $FALLBACK_DIR"
    as_postgres "$BIN/pg_ctl" -D "$FALLBACK_DIR" -l "$FALLBACK_DIR/server.log" -w \
        -o "-c listen_addresses=$HOST -c port=$PORT -c unix_socket_directories=/var/run/postgresql" \
        start >/dev/null
    wait_ready
fi

# Role and database, created only when missing (the password is set every time, harmlessly).
as_postgres psql -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -p "$PORT" -d postgres <<'SQL'
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'capkey') THEN
        CREATE ROLE capkey LOGIN PASSWORD 'capkey';
    ELSE
        ALTER ROLE capkey LOGIN PASSWORD 'capkey';
    END IF;
END
$$;
SQL
if ! as_postgres psql -tAq -h /var/run/postgresql -p "$PORT" -d postgres \
        -c "SELECT 1 FROM pg_database WHERE datname = 'capkey'" | grep -q 1; then
    as_postgres psql -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -p "$PORT" -d postgres \
        -c "CREATE DATABASE capkey OWNER capkey"
fi
log "ready: postgresql://capkey:capkey@$HOST:$PORT/capkey"
