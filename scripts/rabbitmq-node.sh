#!/usr/bin/env bash
# A private, throwaway RabbitMQ node for tests that restart or kill the broker.
#
#   scripts/rabbitmq-node.sh start|stop|status|cleanup|ctl [args...]
#
# Parametrised by port (SMSRELAY_RMQ_PORT, default 5673) so that several nodes can run
# side by side (the seed of a cluster script): node smsrelay-test-<port>@localhost, AMQP
# on <port>, Erlang distribution on <port>+20000 (SMSRELAY_RMQ_DIST_PORT), everything
# (data, logs, config, cookie, pid file) under SMSRELAY_RMQ_DIR (default
# ${TMPDIR:-/tmp}/smsrelay-rabbitmq-<port>).
#
# It runs the installed Debian binaries from /usr/lib/rabbitmq/bin directly: the
# /usr/sbin wrappers switch to the rabbitmq user and use the machine node's cookie.
# The machine's own node (5672) and its /etc/rabbitmq files are never read or touched,
# and the node is stopped through its own pid file, never by name: restarting it
# (`ctl stop_app` / `ctl start_app`) is safe while other tests use the shared broker.
#
#   start    start the node (no-op if it runs) and print its AMQP URL once it accepts
#   stop     stop the node (SIGTERM to the pid in its pid file; SIGKILL after 60 s)
#   status   exit 0 and print the URL if the node runs, exit 3 otherwise
#   cleanup  stop, then delete the node's directory
#   ctl      rabbitmqctl against this node, e.g. `ctl stop_app`
set -euo pipefail

RMQ_BIN=${SMSRELAY_RMQ_BIN:-/usr/lib/rabbitmq/bin}
PORT=${SMSRELAY_RMQ_PORT:-5673}
DIST_PORT=${SMSRELAY_RMQ_DIST_PORT:-$((PORT + 20000))}
NODE=smsrelay-test-${PORT}@localhost
DIR=${SMSRELAY_RMQ_DIR:-${TMPDIR:-/tmp}/smsrelay-rabbitmq-${PORT}}
PID_FILE=$DIR/rabbitmq.pid
URL=amqp://guest:guest@127.0.0.1:${PORT}/

node_env() {
  export HOME=$DIR/home
  export RABBITMQ_NODENAME=$NODE
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT=$PORT
  export RABBITMQ_DIST_PORT=$DIST_PORT
  export RABBITMQ_CONF_ENV_FILE=$DIR/rabbitmq-env.conf
  export RABBITMQ_CONFIG_FILE=$DIR/rabbitmq.conf
  export RABBITMQ_ADVANCED_CONFIG_FILE=$DIR/advanced.config
  export RABBITMQ_ENABLED_PLUGINS_FILE=$DIR/enabled_plugins
  export RABBITMQ_ENABLED_PLUGINS=""
  export RABBITMQ_MNESIA_BASE=$DIR/mnesia
  export RABBITMQ_LOG_BASE=$DIR/log
  export RABBITMQ_PID_FILE=$PID_FILE
  export RABBITMQ_FEATURE_FLAGS_FILE=$DIR/feature_flags
  export ERL_EPMD_ADDRESS=127.0.0.1
  export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

ctl() {
  node_env
  "$RMQ_BIN/rabbitmqctl" -q -n "$NODE" "$@"
}

pid() {
  [ -s "$PID_FILE" ] && tr -dc 0-9 <"$PID_FILE"
}

# The pid in the pid file, if it is still this node (a stale file's pid may be reused).
live_pid() {
  local p
  p=$(pid) || return 1
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 1
  tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "RABBITMQ_NODENAME=$NODE" || return 1
  echo "$p"
}

running() { live_pid >/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

write_files() {
  mkdir -p "$DIR/home" "$DIR/mnesia" "$DIR/log"
  if [ ! -s "$DIR/home/.erlang.cookie" ]; then
    (umask 077 && head -c 30 /dev/urandom | base64 | tr -dc A-Za-z0-9 >"$DIR/home/.erlang.cookie")
  fi
  chmod 400 "$DIR/home/.erlang.cookie"
  # Sourced by rabbitmq-env instead of /etc/rabbitmq/rabbitmq-env.conf (which names the
  # machine's node): empty on purpose, everything comes from node_env.
  : >"$DIR/rabbitmq-env.conf"
  echo "[]." >"$DIR/enabled_plugins"
  echo "[]." >"$DIR/advanced.config"
  cat >"$DIR/rabbitmq.conf" <<EOF
listeners.tcp.local = 127.0.0.1:${PORT}
loopback_users.guest = true
log.console = false
log.file.level = warning
# A throwaway node: keep the quorum-queue write-ahead log small on disk and in memory.
raft.wal_max_size_bytes = 8000000
disk_free_limit.absolute = 50MB
EOF
}

start() {
  if running; then
    echo "$URL"
    return 0
  fi
  write_files
  rm -f "$PID_FILE"
  node_env
  # setsid: the node outlives this shell and is not hit by the caller's terminal signals.
  setsid "$RMQ_BIN/rabbitmq-server" >"$DIR/log/server.out" 2>&1 </dev/null &
  local deadline=$((SECONDS + ${SMSRELAY_RMQ_START_TIMEOUT:-120}))
  until [ -s "$PID_FILE" ]; do
    if [ $SECONDS -ge $deadline ]; then
      echo "rabbitmq node $NODE wrote no pid file; see $DIR/log" >&2
      tail -n 30 "$DIR/log/server.out" >&2 || true
      return 1
    fi
    sleep 0.2
  done
  # `wait` blocks until the app is booted (or the pid dies).
  "$RMQ_BIN/rabbitmqctl" -q -n "$NODE" wait --timeout "${SMSRELAY_RMQ_START_TIMEOUT:-120}" \
    "$PID_FILE" >/dev/null
  until port_open; do
    running || { echo "rabbitmq node $NODE died; see $DIR/log" >&2; return 1; }
    [ $SECONDS -lt $deadline ] || { echo "port $PORT never opened" >&2; return 1; }
    sleep 0.2
  done
  echo "$URL"
}

stop() {
  local p
  if ! p=$(live_pid); then
    rm -f "$PID_FILE"
    return 0
  fi
  kill -TERM "$p"
  for _ in $(seq 1 600); do
    kill -0 "$p" 2>/dev/null || { rm -f "$PID_FILE"; return 0; }
    sleep 0.1
  done
  kill -KILL "$p" 2>/dev/null || true
  rm -f "$PID_FILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status)
    if running; then echo "$URL"; else exit 3; fi ;;
  cleanup)
    stop
    rm -rf "$DIR" ;;
  ctl)
    shift
    ctl "$@" ;;
  *)
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2 ;;
esac
