#!/usr/bin/env bash
# Installs the PostgreSQL server that the token service's tests start
# themselves (tests/api/pg.rs), when it is missing. `make setup` runs it.
# The tests look in PG_BIN, else in the newest /usr/lib/postgresql/*/bin.
set -euo pipefail
if [ -n "${PG_BIN:-}" ] && [ -x "$PG_BIN/postgres" ]; then
  exit 0
fi
if compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
  exit 0
fi
sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
echo "pg-setup: installing the PostgreSQL server (Debian package) for the token service's tests"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq postgresql-15 >/dev/null 2>&1 ||
  "${sudo[@]}" apt-get install -y -qq postgresql >/dev/null
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || {
  echo "pg-setup: no PostgreSQL server in /usr/lib/postgresql/*/bin after the install" >&2
  exit 1
}
