#!/usr/bin/env bash
# The services a full `dapr init` runs in containers, started here as plain processes for a
# slim install (`make dapr-services`; `tools/dapr/services.sh stop` stops them):
#
#   Redis      127.0.0.1:6379   actor state store of components/statestore.yaml (Debian's redis-server)
#   placement  localhost:50005  actor placement, which workflows need (~/.dapr/bin/placement)
#   scheduler  localhost:50006  jobs and reminders: workflow timers and retries (~/.dapr/bin/scheduler)
#
# These are the addresses `dapr run` gives every daprd by default (dapr/cli pkg/standalone/run.go,
# cmd/run.go), so dapr.yaml names none of them. With `dapr init --slim` the CLI installs the two
# binaries but starts neither. Both would serve health checks on 8080 and metrics on 9090 and so
# collide: metrics are off, and each health server gets a free port (written to var/dapr/*.healthz)
# rather than a fixed one that an outgoing connection may hold. Everything they write (data,
# logs, pid files) stays under var/dapr/.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
state=${DAPR_VAR_DIR:-$root/var/dapr}
if [[ -n "${DAPR_RUNTIME_PATH:-}" ]]; then bin="$DAPR_RUNTIME_PATH/.dapr/bin"; else bin="$HOME/.dapr/bin"; fi

# Waits until a TCP port on 127.0.0.1 accepts connections; fails after $2 seconds, or at once
# when process $3 (if given) has exited.
wait_port() {
  local port=$1 seconds=$2 pid=${3:-} i
  for ((i = 0; i < seconds * 10; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

running() { [[ -f "$state/$1.pid" ]] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null; }

install_redis() {
  command -v redis-server >/dev/null && return 0
  echo "services.sh: installing Debian's redis-server"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
}

start_redis() {
  if running redis; then echo "services.sh: redis already running"; return 0; fi
  if port_open 6379; then
    echo "services.sh: something else listens on 127.0.0.1:6379; using it as the state store"
    return 0
  fi
  install_redis
  mkdir -p "$state/redis"
  # Loopback only, no password (components/statestore.yaml names none); append-only so that
  # workflow state survives a restart of Redis too.
  redis-server --bind 127.0.0.1 -::1 --port 6379 --protected-mode yes \
    --daemonize yes --pidfile "$state/redis.pid" --logfile "$state/redis.log" \
    --dir "$state/redis" --appendonly yes --save ""
  wait_port 6379 10 || { echo "services.sh: redis did not start; see $state/redis.log" >&2; exit 1; }
}

# start_control_plane NAME PORT ARGS...: placement or scheduler, detached, logging under var/dapr.
start_control_plane() {
  local name=$1 port=$2
  shift 2
  if running "$name"; then echo "services.sh: $name already running"; return 0; fi
  if port_open "$port"; then
    echo "services.sh: something else listens on port $port; using it as $name"
    return 0
  fi
  [[ -x "$bin/$name" ]] || { echo "services.sh: no $bin/$name: run \`make dapr\` first" >&2; exit 1; }
  local healthz
  healthz=$(free_port)
  echo "$healthz" >"$state/$name.healthz"
  setsid "$bin/$name" "$@" --healthz-port "$healthz" --enable-metrics=false \
    >"$state/$name.log" 2>&1 </dev/null &
  echo $! >"$state/$name.pid"
  wait_port "$port" 60 $! || { echo "services.sh: $name did not start; see $state/$name.log" >&2; exit 1; }
}

start() {
  mkdir -p "$state"
  start_redis
  # 1.18.2 reads --healthz-listen-address but still serves health checks on every address.
  start_control_plane placement 50005 --listen-address 127.0.0.1 --port 50005 \
    --healthz-listen-address 127.0.0.1
  # The broadcast address is what daprd dials after its first contact; the CLI's container
  # setup advertises localhost:50006 the same way (dapr/cli pkg/standalone/standalone.go).
  # The embedded etcd keeps its data under var/dapr/scheduler and listens on localhost:2379/2380.
  start_control_plane scheduler 50006 --listen-address 127.0.0.1 --port 50006 \
    --healthz-listen-address 127.0.0.1 \
    --etcd-data-dir "$state/scheduler" --override-broadcast-host-port localhost:50006
  echo "services.sh: redis :6379, placement :50005, scheduler :50006 (logs in $state)"
}

stop_one() {
  local name=$1 pid i
  running "$name" || { rm -f "$state/$name.pid"; return 0; }
  pid=$(cat "$state/$name.pid")
  kill "$pid"
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$state/$name.pid" "$state/$name.healthz"
  echo "services.sh: stopped $name"
}

stop() {
  stop_one scheduler
  stop_one placement
  stop_one redis
}

status() {
  local name
  for name in redis placement scheduler; do
    if running "$name"; then echo "$name: running (pid $(cat "$state/$name.pid"))"; else echo "$name: stopped"; fi
  done
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
