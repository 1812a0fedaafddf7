#!/usr/bin/env bash
# A throwaway 3-node RabbitMQ cluster on this machine, beside the machine's own node.
#
#   scripts/rabbitmq-cluster.sh start|status|stop|cleanup|ctl <n> [args...]|kill <n>|revive <n>
#
# Each node is a scripts/rabbitmq-node.sh node (its own name, AMQP port, distribution
# port = port + 20000, config, data and log directories, pid file), on ports
# SMSRELAY_RMQ_CLUSTER_PORT (default 5681), +1, +2, all under SMSRELAY_RMQ_CLUSTER_DIR
# (default ${TMPDIR:-/tmp}/smsrelay-rabbitmq-cluster-<port>): node<n>/. The nodes share
# one Erlang cookie, have management off and a capped Ra write-ahead log, and nodes 2
# and 3 join node 1. The machine's node (5672) and /etc/rabbitmq are never touched.
# Keep every port and port + 20000 below the ephemeral range (32768 up here): otherwise
# a killed node's port may be taken by an outgoing connection before it is revived.
#
#   start    start the three nodes (no-op for those running), join them, print the URLs
#   status   print the URLs of the running nodes; exit 3 unless all three run
#   stop     stop every node by its pid file (SIGTERM; SIGKILL after 60 s)
#   cleanup  stop, then delete the cluster's directory
#   ctl n …  rabbitmqctl against node n (1..3)
#   kill n   kill -9 node n's beam process (by its pid file): a crashed node
#   revive n start node n again after a kill; it rejoins with its data
set -euo pipefail

NODE_SCRIPT=$(dirname "$(readlink -f "$0")")/rabbitmq-node.sh
BASE=${SMSRELAY_RMQ_CLUSTER_PORT:-5681}
DIR=${SMSRELAY_RMQ_CLUSTER_DIR:-${TMPDIR:-/tmp}/smsrelay-rabbitmq-cluster-${BASE}}
NODES=(1 2 3)

port() { echo $((BASE + $1 - 1)); }

node() {
  local n=$1
  shift
  # A node that fails to boot writes its crash dump beside its data, not in the caller's cwd.
  ERL_CRASH_DUMP=$DIR/node$n/erl_crash.dump SMSRELAY_RMQ_PORT=$(port "$n") \
    SMSRELAY_RMQ_DIR=$DIR/node$n "$NODE_SCRIPT" "$@"
}

share_cookie() {
  mkdir -p "$DIR"
  if [ ! -s "$DIR/cookie" ]; then
    (umask 077 && head -c 30 /dev/urandom | base64 | tr -dc A-Za-z0-9 >"$DIR/cookie")
  fi
  local n
  for n in "${NODES[@]}"; do
    mkdir -p "$DIR/node$n/home"
    if ! cmp -s "$DIR/cookie" "$DIR/node$n/home/.erlang.cookie"; then
      rm -f "$DIR/node$n/home/.erlang.cookie"
      (umask 077 && cp "$DIR/cookie" "$DIR/node$n/home/.erlang.cookie")
    fi
  done
}

members() { node 1 ctl cluster_status --formatter json 2>/dev/null || true; }

start() {
  share_cookie
  local n pids=()
  # Start all three at once: each boots alone first (~15 s), then 2 and 3 join 1.
  for n in "${NODES[@]}"; do
    node "$n" start >/dev/null &
    pids+=($!)
  done
  local failed=0
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  [ $failed -eq 0 ] || { echo "a node failed to start; see $DIR/node*/log" >&2; return 1; }
  local status
  status=$(members)
  for n in 2 3; do
    if ! grep -q "smsrelay-test-$(port "$n")@localhost" <<<"$status" \
      || ! node "$n" ctl cluster_status --formatter json | grep -q "smsrelay-test-$(port 1)@localhost"; then
      # rabbitmqctl's boot chatter goes to the log; a failure still stops the script.
      {
        node "$n" ctl stop_app
        node "$n" ctl reset
        node "$n" ctl join_cluster "smsrelay-test-$(port 1)@localhost"
        node "$n" ctl start_app
        node "$n" ctl await_startup
      } >>"$DIR/join.log" 2>&1 || { tail -n 20 "$DIR/join.log" >&2; return 1; }
    fi
  done
  urls
}

urls() {
  local n
  for n in "${NODES[@]}"; do
    node "$n" status 2>/dev/null || true
  done
}

status() {
  local up=0 n
  for n in "${NODES[@]}"; do
    if node "$n" status; then up=$((up + 1)); fi
  done
  [ $up -eq 3 ] || exit 3
}

stop() {
  local n pids=()
  for n in "${NODES[@]}"; do
    node "$n" stop &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || true; done
}

kill_node() {
  local file=$DIR/node$1/rabbitmq.pid p
  p=$(tr -dc 0-9 <"$file" 2>/dev/null) || true
  [ -n "$p" ] || { echo "node $1 has no pid file" >&2; return 1; }
  # Only this node's beam: the pid file may be stale and its pid reused.
  tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null \
    | grep -qx "RABBITMQ_NODENAME=smsrelay-test-$(port "$1")@localhost" \
    || { echo "pid $p is not node $1" >&2; return 1; }
  kill -KILL "$p"
  while kill -0 "$p" 2>/dev/null; do sleep 0.05; done
}

case "${1:-}" in
  start) start ;;
  status) status ;;
  stop) stop ;;
  cleanup)
    stop
    rm -rf "$DIR" ;;
  ctl)
    n=${2:?node number}
    shift 2
    node "$n" ctl "$@" ;;
  kill) kill_node "${2:?node number}" ;;
  revive)
    share_cookie
    node "${2:?node number}" start ;;
  *)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2 ;;
esac
