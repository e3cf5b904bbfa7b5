#!/bin/bash
# Redis entrypoint with the official redis image's conventions: arguments that start with "-" (or a *.conf
# file) are redis-server's; without a configuration file protected mode is off, so other containers of the
# Pod network can connect. Started as root it hands /data to the redis user and drops privileges.
set -Eeuo pipefail

if [[ $# -eq 0 || ${1:0:1} == - || $1 == *.conf ]]; then
  set -- redis-server "$@"
fi

if [[ $1 == redis-server ]]; then
  if [[ $(id -u) -eq 0 ]]; then
    # Only what is not already the redis user's: a large append-only file is not walked on every start.
    find . \! -user redis -exec chown redis:redis '{}' +
    exec setpriv --reuid=redis --regid=redis --init-groups "$BASH_SOURCE" "$@"
  fi
  if [[ ${2:-} != *.conf ]]; then
    # Options given later on the command line win, so a user's --protected-mode yes still applies.
    set -- "$1" --protected-mode no "${@:2}"
  fi
fi

exec "$@"
