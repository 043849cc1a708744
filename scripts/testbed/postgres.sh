#!/usr/bin/env bash
# A private PostgreSQL 15 cluster for tests and benchmarks: its own data directory, a free
# loopback port, trust auth for every role but one password role on 127.0.0.1, and TLS
# with its own CA when asked (--tls). Never the packaged cluster, never a fixed port.
#
# Usage: scripts/testbed/postgres.sh start DIR [--tls]
#                                  prints `URL PID` on stdout once it accepts connections
#                                  (DIR is created, owned by postgres)
#        scripts/testbed/postgres.sh stop DIR
#                                  fast shutdown of the cluster in DIR
#
# What `start` makes in DIR besides the cluster (data/, server.log, the socket):
#   salve_pw.password the password of role `salve_pw` (SCRAM; pg_hba requires
#                     scram-sha-256 for it from loopback), which owns database `salve_pw`
#   tls/ca.crt        with --tls: a self-signed CA; the server's certificate
#                     (tls/server.crt, for 127.0.0.1 and localhost) chains to it, and the
#                     server runs with ssl=on
#   bed.env           TESTBED_POSTGRES_URL (the admin URL printed, role postgres, trust),
#                     TESTBED_POSTGRES_PASSWORD_URL (role salve_pw, no password in it),
#                     TESTBED_POSTGRES_PASSWORD and, with --tls, TESTBED_POSTGRES_CA: one
#                     NAME=VALUE a line (values without spaces or quotes), for
#                     `set -a; . DIR/bed.env`
#
# With --tls both URLs say `sslmode=disable`: a client's default `prefer` would try TLS
# and refuse the bed's own CA (salve's store verifies every certificate it is shown), and
# a URL rebuilt without its options falls back to that default. Replace it with
# `sslmode=require` and give the CA to go over TLS. Without --tls (scripts/bench) the
# server has no TLS and the URLs carry no options, as before.
#
# DIR must be somewhere the `postgres` user can reach (/tmp, /var/tmp), not under a home
# directory it cannot enter.
set -euo pipefail

readonly BIN=${TESTBED_PG_BIN:-/usr/lib/postgresql/15/bin}
action=${1:?usage: postgres.sh start|stop DIR}
dir=${2:?usage: postgres.sh start|stop DIR}
tls=0
if [[ ${3:-} == --tls ]]; then tls=1; fi

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

# A CA and a server certificate signed by it, for 127.0.0.1 and localhost (rustls checks
# the names against the subjectAltName; a v3 CA with keyCertSign).
make_certificates() {
  local tls=$1
  mkdir -p "$tls"
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$tls/ca.key" -out "$tls/ca.crt" -days 30 -subj "/CN=salve test bed CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$tls/server.key" -out "$tls/server.csr" -subj "/CN=127.0.0.1" 2>/dev/null
  printf '%s\n' \
    "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth" \
    "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$tls/server.ext"
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
    -CAcreateserial -days 30 -extfile "$tls/server.ext" -out "$tls/server.crt" 2>/dev/null
  rm -f "$tls/server.csr" "$tls/server.ext" "$tls/ca.srl"
  # The server refuses a key others can read.
  chmod 600 "$tls/server.key" "$tls/ca.key"
  chmod 644 "$tls/ca.crt" "$tls/server.crt"
}

case $action in
  start)
    for tool in initdb pg_ctl postgres psql; do
      if [[ ! -x $BIN/$tool ]]; then
        echo "postgres.sh: test bed missing: $BIN/$tool (Debian package postgresql-15)" >&2
        exit 1
      fi
    done
    if ! command -v openssl >/dev/null; then
      echo "postgres.sh: test bed missing: openssl (for the cluster's TLS certificates)" >&2
      exit 1
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ $tls -eq 1 ]]; then make_certificates "$dir/tls"; fi
    password=$(openssl rand -hex 24)
    (umask 077 && printf '%s\n' "$password" >"$dir/salve_pw.password")
    if [[ $EUID -eq 0 ]]; then chown -R postgres:postgres "$dir"; fi
    chmod 700 "$dir"
    as_postgres "$BIN/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || {
      cat "$dir/initdb.log" >&2
      exit 1
    }
    # First match wins: the password role must prove its password from loopback (over TLS
    # or not); everyone else is trusted there. Nothing listens beyond 127.0.0.1.
    cat >"$dir/data/pg_hba.conf" <<'EOF'
local all all                  trust
host  all salve_pw 127.0.0.1/32 scram-sha-256
host  all all      127.0.0.1/32 trust
EOF
    echo "password_encryption = 'scram-sha-256'" >>"$dir/data/postgresql.conf"
    if [[ $tls -eq 1 ]]; then
      cat >>"$dir/data/postgresql.conf" <<EOF
ssl = on
ssl_cert_file = '$dir/tls/server.crt'
ssl_key_file = '$dir/tls/server.key'
EOF
    fi
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
    # The password role (hashed by the server: SCRAM, as password_encryption says) and a
    # database it owns, so it can run migrations there.
    as_postgres "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres \
      -v password="$password" >/dev/null <<'EOF' || {
CREATE ROLE salve_pw LOGIN PASSWORD :'password';
CREATE DATABASE salve_pw OWNER salve_pw;
EOF
      echo "postgres.sh: could not create role salve_pw (server log: $dir/server.log)" >&2
      as_postgres "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
      exit 1
    }
    options=
    if [[ $tls -eq 1 ]]; then options='?sslmode=disable'; fi
    url="postgres://postgres@127.0.0.1:$port/postgres$options"
    {
      echo "TESTBED_POSTGRES_URL=$url"
      echo "TESTBED_POSTGRES_PASSWORD_URL=postgres://salve_pw@127.0.0.1:$port/salve_pw$options"
      echo "TESTBED_POSTGRES_PASSWORD=$password"
      if [[ $tls -eq 1 ]]; then echo "TESTBED_POSTGRES_CA=$dir/tls/ca.crt"; fi
    } >"$dir/bed.env"
    chmod 600 "$dir/bed.env"
    echo "$url $pid"
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
