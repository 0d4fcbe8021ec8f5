#!/usr/bin/env bash
# `make run` on any machine: runs the worker command given as arguments (e.g.
# `scripts/run-local.sh target/release/notification-worker run`) against the NATS server of
# NATS_URL (default nats://127.0.0.1:4222). When NATS_URL is that default or another single
# local address (127.0.0.1 or localhost) and nothing listens there, a private
# `nats-server -js` is started on it, with its store under ./data/nats, and stopped once the
# worker has stopped (also on Ctrl-C or SIGTERM). Any other NATS_URL (a remote host,
# several servers, tls://) is the user's own infrastructure: nothing is started.
set -euo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: $0 WORKER_COMMAND [ARGS...]" >&2
  exit 2
fi

say() { echo "run-local: $*" >&2; }

listens() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Installs nats-server where the system allows it (root with apt-get, as
# scripts/test-deps.sh does); elsewhere says the one command that does.
require_nats_server() {
  command -v nats-server >/dev/null && return
  if [ "$EUID" -eq 0 ] && command -v apt-get >/dev/null; then
    say "nats-server is missing; installing it with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
    return
  fi
  local install
  if command -v apt-get >/dev/null; then
    install="sudo apt-get install nats-server"
  elif command -v brew >/dev/null; then
    install="brew install nats-server"
  else
    install="go install github.com/nats-io/nats-server/v2@latest"
  fi
  say "nothing listens on $host:$port and nats-server is not installed: install it ($install)" \
    "or set NATS_URL to a running server, then run again"
  exit 1
}

url="${NATS_URL:-nats://127.0.0.1:4222}"
nats_pid=""
worker_pid=""

# Stops the nats-server this script started, after the worker (which acknowledges what it
# finished on the way out): SIGTERM, then SIGKILL if it is still there after 10 s.
stop_nats() {
  [ -n "$nats_pid" ] || return 0
  kill -TERM "$nats_pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$nats_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$nats_pid" 2>/dev/null || true
  wait "$nats_pid" 2>/dev/null || true
  nats_pid=""
}
trap stop_nats EXIT
# A signal before the worker runs ends the script (and the server, on EXIT); once it runs,
# the signal goes to the worker, and the script ends when the worker has.
forward() {
  if [ -z "$worker_pid" ]; then
    exit "$2"
  fi
  kill -"$1" "$worker_pid" 2>/dev/null || true
}
trap 'forward INT 130' INT
trap 'forward TERM 143' TERM
trap 'forward HUP 129' HUP

if [[ "$url" =~ ^(nats://)?(127\.0\.0\.1|localhost):([0-9]+)$ ]]; then
  host="${BASH_REMATCH[2]}"
  port="${BASH_REMATCH[3]}"
  if ! listens "$host" "$port"; then
    require_nats_server
    mkdir -p data/nats
    # Its own process group (set -m): Ctrl-C in the terminal reaches this script, which
    # stops the worker first and the server last.
    set -m
    nats-server -js -a 127.0.0.1 -p "$port" -sd data/nats >data/nats/nats-server.log 2>&1 &
    nats_pid=$!
    set +m
    for _ in $(seq 100); do
      listens 127.0.0.1 "$port" && break
      if ! kill -0 "$nats_pid" 2>/dev/null; then
        say "nats-server did not start; its log (data/nats/nats-server.log) ends with:"
        tail -n 5 data/nats/nats-server.log >&2
        nats_pid=""
        exit 1
      fi
      sleep 0.1
    done
    if ! listens 127.0.0.1 "$port"; then
      say "nats-server (pid $nats_pid) did not listen on 127.0.0.1:$port within 10 s; see data/nats/nats-server.log"
      exit 1
    fi
    say "nothing listened on $host:$port: started nats-server -js there (pid $nats_pid, store ./data/nats," \
      "log ./data/nats/nats-server.log); it stops when the worker stops"
  fi
fi

# The worker in its own process group too: it hears a signal once, from this script.
set -m
"$@" &
worker_pid=$!
set +m

# `wait` returns early when a trapped signal arrives: wait again until the worker is gone.
status=0
while :; do
  wait "$worker_pid" && status=0 || status=$?
  kill -0 "$worker_pid" 2>/dev/null || break
done
stop_nats
exit "$status"
