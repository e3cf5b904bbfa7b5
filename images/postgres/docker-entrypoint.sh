#!/bin/bash
# PostgreSQL entrypoint with the official postgres image's conventions: POSTGRES_PASSWORD (required unless
# POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_USER (default postgres), POSTGRES_DB (default: the user's name),
# PGDATA, POSTGRES_INITDB_ARGS, and *.sql / *.sh files in /docker-entrypoint-initdb.d run once on an empty PGDATA.
# Started as root it prepares PGDATA and re-executes itself as the postgres user.
set -Eeuo pipefail

# `docker run postgres -c work_mem=8MB` style: options alone mean "postgres with these options".
if [[ $# -eq 0 || ${1:0:1} == - ]]; then
  set -- postgres "$@"
fi
[[ $1 == postgres ]] || exec "$@"

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

if [[ $(id -u) -eq 0 ]]; then
  install -d -m 700 -o postgres -g postgres "$PGDATA"
  # A volume mounted over the data directory may bring its own ownership.
  chown postgres:postgres "$PGDATA"
  install -d -m 2775 -o postgres -g postgres /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
fi

if [[ ! -s $PGDATA/PG_VERSION ]]; then
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  host_auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
  if [[ -z ${POSTGRES_PASSWORD:-} && $host_auth != trust ]]; then
    cat >&2 <<'MSG'
postgres: the database is uninitialized and POSTGRES_PASSWORD is not set.
  Set POSTGRES_PASSWORD to the superuser's password (or POSTGRES_HOST_AUTH_METHOD=trust to allow every
  connection without a password, which is unsafe).
MSG
    exit 1
  fi
  echo "postgres: initializing $PGDATA for user $user, database $db"
  # Local (unix socket) connections are trusted, as in the official image; network connections, loopback
  # included, need the password.
  initdb=(initdb --username="$user" --auth-local=trust --auth-host="$host_auth")
  pwfile=$(mktemp)
  if [[ -n ${POSTGRES_PASSWORD:-} ]]; then
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb+=(--pwfile="$pwfile")
  fi
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of options, as in the official image
  "${initdb[@]}" ${POSTGRES_INITDB_ARGS:-}
  rm -f "$pwfile"
  printf 'host all all all %s\n' "$host_auth" >>"$PGDATA/pg_hba.conf"

  # A server on the unix socket only, so nothing connects before the setup below is done.
  pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses=''" --wait --silent start
  psql=(psql --no-psqlrc --set ON_ERROR_STOP=1 --username "$user" --dbname postgres)
  if [[ $db != postgres ]]; then
    exists=$("${psql[@]}" --tuples-only --no-align --set db="$db" <<<"SELECT 1 FROM pg_database WHERE datname = :'db'")
    if [[ -z $exists ]]; then
      "${psql[@]}" --set db="$db" <<<'CREATE DATABASE :"db"'
    fi
  fi
  for file in /docker-entrypoint-initdb.d/*; do
    [[ -e $file ]] || continue
    case $file in
      *.sh) echo "postgres: running $file"; bash "$file" ;;
      *.sql) echo "postgres: running $file"; "${psql[@]}" --dbname "$db" -f "$file" ;;
      *) echo "postgres: ignoring $file" ;;
    esac
  done
  pg_ctl --pgdata="$PGDATA" --mode=fast --wait --silent stop
  echo "postgres: initialization done"
fi

exec "$@"
