#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the store tests and prints its URL as the last line of stdout:
#
#   export TEST_DATABASE_URL="$(bash .ci/postgres.sh [DATA_DIR] | tail -n 1)"
#
# The server listens on 127.0.0.1 only, on port 55432 or, when that port is taken (a loopback connection of an
# earlier test may hold it: it lies in the kernel's ephemeral range), the next free one of 55433-55441; with
# superuser `postgres` and `trust` authentication: it is for tests, never for data anyone wants to keep. DATA_DIR (default /tmp/convene-pg) holds the cluster and its log, server.log.
# PostgreSQL comes from Debian's apt, and only when no `initdb` is found on PATH or in /usr/lib/postgresql/*/bin.
# Safe to run again: the cluster's own server, still running, is reused on its port; a server answering on 55432 is
# reused too; a stopped cluster is started again.
# PostgreSQL refuses to run as root, so as root the server runs as the system user `convene-pg`, created if missing.
# Stop it with: pg_ctl -D DATA_DIR stop (as that user when run as root).
set -euo pipefail

data_dir="${1:-/tmp/convene-pg}"
first_port=55432
last_port=55441
os_user=convene-pg

log() { echo "postgres.sh: $*" >&2; }

# The directory holding initdb, pg_ctl and pg_isready: PATH first, then the newest Debian server package.
find_bin_dir() {
    if command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return
    fi
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -n "$dir" && -x "$dir/initdb" ]]; then
        echo "$dir"
    fi
}

bin_dir="$(find_bin_dir)"
if [[ -z "$bin_dir" ]]; then
    log "no initdb found: installing postgresql from apt"
    sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then
        sudo=(sudo)
    fi
    "${sudo[@]}" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends postgresql >&2
    bin_dir="$(find_bin_dir)"
    [[ -n "$bin_dir" ]] || { log "postgresql installed but initdb still not found"; exit 1; }
fi

pg_isready="$bin_dir/pg_isready"
[[ -x "$pg_isready" ]] || pg_isready="pg_isready"
ready() { "$pg_isready" -q -h 127.0.0.1 -p "$1" -U postgres -d postgres; }
url() { echo "postgres://postgres@127.0.0.1:$1/postgres"; }

# The settings the server runs with; a running server of this cluster started without them is restarted.
# No Unix socket: the tests use TCP, and a socket path would depend on the data dir's length and permissions.
# fsync=off: nothing here needs to survive a crash, and every test creates and drops a database.
# max_connections=300: tests run two at a time, some with three nodes, each node with Convene's pool and the
# sandbox's.
settings="-c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off -c max_connections=300"

# Runs a server command as the user that owns the cluster: ourselves, or `convene-pg` when we are root.
as_owner() {
    if [[ "$(id -u)" -eq 0 ]]; then
        runuser -u "$os_user" -- "$@"
    else
        "$@"
    fi
}

# The cluster's own server, if it runs: postmaster.pid holds its port on the fourth line.
if [[ -f "$data_dir/postmaster.pid" ]]; then
    running_port="$(sed -n 4p "$data_dir/postmaster.pid" 2>/dev/null || true)"
    if [[ "$running_port" =~ ^[0-9]+$ ]] && ready "$running_port"; then
        if grep -q "max_connections=300" "$data_dir/postmaster.opts" 2>/dev/null; then
            log "the cluster in $data_dir already runs on 127.0.0.1:${running_port}: reusing it"
            url "$running_port"
            exit 0
        fi
        log "the cluster in $data_dir runs with older settings: restarting it"
        as_owner "$bin_dir/pg_ctl" -D "$data_dir" -m fast -w stop >&2 || true
    fi
fi
if ready "$first_port"; then
    log "a server already answers on 127.0.0.1:${first_port}: reusing it"
    url "$first_port"
    exit 0
fi

if [[ "$(id -u)" -eq 0 ]] && ! id "$os_user" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$os_user"
fi

mkdir -p "$data_dir"
if [[ "$(id -u)" -eq 0 ]]; then
    chown "$os_user" "$data_dir"
fi
chmod 700 "$data_dir"

if [[ ! -f "$data_dir/PG_VERSION" ]]; then
    log "creating a cluster in $data_dir"
    # --locale=C: byte-order collation and no dependence on which locales the machine has generated.
    as_owner "$bin_dir/initdb" -D "$data_dir" -U postgres --auth=trust -E UTF8 --locale=C >&2
fi

# A port is free when nothing listens on it and no socket holds it as its local address.
port_free() { [[ -z "$(ss -Htan exclude time-wait "( sport = :$1 )" 2>/dev/null)" ]]; }

started=""
for port in $(seq "$first_port" "$last_port"); do
    if command -v ss >/dev/null 2>&1 && ! port_free "$port"; then
        log "port $port is taken: trying the next"
        continue
    fi
    log "starting the server on 127.0.0.1:${port} (log: $data_dir/server.log)"
    logged_before="$(wc -c < "$data_dir/server.log" 2>/dev/null || echo 0)"
    if as_owner "$bin_dir/pg_ctl" -D "$data_dir" -l "$data_dir/server.log" -w -t 30 \
        -o "-p ${port} ${settings}" start >&2; then
        started="$port"
        break
    fi
    # Taken between the check and the bind: try the next port; any other failure ends here. Only what this start
    # logged is read.
    if ! tail -c "+$((logged_before + 1))" "$data_dir/server.log" 2>/dev/null | grep -q "Address already in use"; then
        break
    fi
    log "port $port was taken as the server started: trying the next"
done
if [[ -z "$started" ]]; then
    log "the server did not start; the end of its log:"
    tail -n 20 "$data_dir/server.log" >&2 || true
    exit 1
fi

for _ in $(seq 1 30); do
    if ready "$started"; then
        url "$started"
        exit 0
    fi
    sleep 1
done
log "the server started but does not accept connections after 30 s; the end of its log:"
tail -n 20 "$data_dir/server.log" >&2 || true
exit 1
