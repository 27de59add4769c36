#!/usr/bin/env bash
# A private PostgreSQL for the test suite's PostgreSQL pass: Debian's server (installed when
# missing), a cluster of its own under var/postgres, listening on loopback only, with a password
# generated at first start. Safe to run again: it starts the server only when it is not running.
# Prints the database URL on stdout (everything else goes to stderr).
#
#   tools/postgres.sh         install if needed, start, print the URL
#   tools/postgres.sh stop    stop the server
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${POSTGRES_TEST_PORT:-55432}   # not 5432: never collide with a system cluster
ROOT=$PWD/var/postgres
DATA=$ROOT/data

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

# initdb and postgres refuse to run as root: run them as Debian's postgres user then.
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

BIN=$(find_bin)
if [ -z "$BIN" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "PostgreSQL is not installed and this user cannot apt-get install it" >&2
    exit 1
  fi
  echo "installing Debian's postgresql for the PostgreSQL test pass" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  BIN=$(find_bin)
fi

if [ "${1:-start}" = stop ]; then
  [ -f "$DATA/postmaster.pid" ] && as_owner "$BIN/pg_ctl" -D "$DATA" -m fast stop >&2
  exit 0
fi

mkdir -p "$ROOT"
if [ ! -f "$ROOT/password" ]; then
  (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(24))' >"$ROOT/password")
fi
if [ ! -f "$DATA/PG_VERSION" ]; then
  rm -rf "$DATA"
  install -d -m 700 "$DATA"
  pwfile=$(mktemp)
  cp "$ROOT/password" "$pwfile"
  if [ "$(id -u)" = 0 ]; then chown postgres "$DATA" "$pwfile"; fi
  as_owner "$BIN/initdb" -D "$DATA" -U postgres --pwfile="$pwfile" \
    --auth=scram-sha-256 --encoding=UTF8 --no-instructions >/dev/null
  rm -f "$pwfile"
fi

if ! as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  # The socket directory defaults to /var/run/postgresql, which may not exist: keep it private.
  # fsync=off: this cluster holds only throw-away test databases; the pass checks locking and
  # constraints, not PostgreSQL's durability.
  as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DATA -c fsync=off" >&2
fi

password=$(cat "$ROOT/password")
url="postgres://postgres:$password@127.0.0.1:$PORT/orders"
if ! PGPASSWORD=$password as_owner "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'orders'" postgres | grep -q 1; then
  PGPASSWORD=$password as_owner "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres orders >&2
fi
echo "$url"
