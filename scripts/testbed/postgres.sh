#!/usr/bin/env bash
# A private PostgreSQL 15 cluster for tests and benchmarks: its own data directory, a free
# loopback port, trust auth for the `postgres` role on 127.0.0.1 only. Never the packaged
# cluster, never a fixed port.
#
# Usage: scripts/testbed/postgres.sh start DIR   prints `URL PID` on stdout once it accepts
#                                                connections (DIR is created, owned by postgres)
#        scripts/testbed/postgres.sh stop DIR    fast shutdown of the cluster in DIR
set -euo pipefail

readonly BIN=${TESTBED_PG_BIN:-/usr/lib/postgresql/15/bin}
action=${1:?usage: postgres.sh start|stop DIR}
dir=${2:?usage: postgres.sh start|stop DIR}

as_postgres() {
  # initdb and postgres refuse to run as root.
  if [[ $EUID -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

case $action in
  start)
    for tool in initdb pg_ctl postgres; do
      if [[ ! -x $BIN/$tool ]]; then
        echo "postgres.sh: test bed missing: $BIN/$tool (Debian package postgresql-15)" >&2
        exit 1
      fi
    done
    rm -rf "$dir"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ $EUID -eq 0 ]]; then chown postgres:postgres "$dir"; fi
    chmod 700 "$dir"
    as_postgres "$BIN/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || {
      cat "$dir/initdb.log" >&2
      exit 1
    }
    # The port is picked free, then bound by postgres a moment later; a collision in between
    # makes pg_ctl fail here (loudly), never reach another service.
    port=$(free_port)
    as_postgres "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=128MB -c fsync=on -c synchronous_commit=on" \
      start >/dev/null || {
      cat "$dir/server.log" >&2
      exit 1
    }
    pid=$(head -n1 "$dir/data/postmaster.pid")
    echo "postgres://postgres@127.0.0.1:$port/postgres $pid"
    ;;
  stop)
    if [[ -f $dir/data/postmaster.pid ]]; then
      as_postgres "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    fi
    ;;
  *)
    echo "usage: postgres.sh start|stop DIR" >&2
    exit 2
    ;;
esac
