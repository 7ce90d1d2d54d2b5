#!/bin/sh
# Stops the Module Proxy that start.sh started: SIGTERM, which lets requests in flight finish (up to
# 10 s), then waits up to 15 s for it to exit before giving up, and removes logs/modproxy.pid.
set -eu

cd "$(dirname "$0")"
pidfile=logs/modproxy.pid

if [ ! -f "$pidfile" ]; then
  echo "modproxy is not running (no $pidfile)" >&2
  exit 0
fi
pid=$(cat "$pidfile")

if ! kill -0 "$pid" 2>/dev/null; then
  echo "modproxy (pid $pid) was not running; removing the stale pid file" >&2
  rm -f "$pidfile"
  exit 0
fi
if [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" != modproxy ]; then
  echo "pid $pid is not modproxy; removing the stale pid file" >&2
  rm -f "$pidfile"
  exit 0
fi

kill -TERM "$pid"
tries=150 # 15 s in steps of 0.1 s
while kill -0 "$pid" 2>/dev/null; do
  tries=$((tries - 1))
  if [ "$tries" -le 0 ]; then
    echo "modproxy (pid $pid) did not exit within 15 s; still running" >&2
    exit 1
  fi
  sleep 0.1
done
rm -f "$pidfile"
echo "modproxy stopped"
