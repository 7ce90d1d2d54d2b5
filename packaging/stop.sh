#!/bin/sh
# Stops the Module Proxy that start.sh started, through `bin/modproxy stop`: SIGTERM, which lets requests in
# flight finish (up to 10 s), then a wait of up to 15 s for it to exit; the server removes logs/modproxy.pid.
set -eu

cd "$(dirname "$0")"
pidfile=logs/modproxy.pid

if bin/modproxy stop --home "$(pwd)"; then
  exit 0
fi
# modproxy has said why. No pid file, or a stale one (which it removed), means nothing was running: done.
# A pid file left in place means a server that would not stop.
[ ! -f "$pidfile" ]
