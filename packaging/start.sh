#!/bin/sh
# Starts Module Proxy in the background with this directory as its HOME (conf/default.toml, html/,
# logs/). The pid goes to logs/modproxy.pid; a second start while it runs is refused. Extra arguments
# are passed to modproxy, e.g. `./start.sh --config conf/other.toml`.
set -eu

cd "$(dirname "$0")"
home=$(pwd)
pidfile=logs/modproxy.pid
mkdir -p logs

# True if $1 is a live modproxy process (not just any process that reused the pid).
is_modproxy() {
  kill -0 "$1" 2>/dev/null || return 1
  [ ! -r "/proc/$1/comm" ] || [ "$(cat "/proc/$1/comm")" = modproxy ]
}

if [ -f "$pidfile" ]; then
  pid=$(cat "$pidfile")
  if is_modproxy "$pid"; then
    echo "modproxy is already running (pid $pid); stop it with ./stop.sh" >&2
    exit 1
  fi
  echo "removing a stale pid file (pid $pid is not running)" >&2
  rm -f "$pidfile"
fi

# Reject a bad config here, with its line and key, rather than in a log after returning.
bin/modproxy check --home "$home" "$@" >/dev/null

# The console copy of the log is dropped: logs/modproxy.log has it. Startup errors and panics go to stderr.
nohup bin/modproxy --home "$home" "$@" >/dev/null 2>>logs/stderr.log </dev/null &
pid=$!
# The server writes the same pid once its ports are bound and removes it when it exits; writing it here
# too lets a stop.sh that comes at once find it.
echo "$pid" >"$pidfile"

# A process that exits at once (say, the port is taken) is reported now, not found later.
sleep 1
if ! kill -0 "$pid" 2>/dev/null; then
  rm -f "$pidfile"
  echo "modproxy exited right after starting; logs/stderr.log says:" >&2
  tail -n 5 logs/stderr.log >&2
  exit 1
fi
echo "modproxy started (pid $pid); logs in $home/logs/"
