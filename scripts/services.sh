#!/usr/bin/env bash
# Start RabbitMQ, PostgreSQL and Redis if they are not answering (a clean machine or CI).
# On Debian/Ubuntu as root, install whichever is missing first; otherwise say what to install.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

missing=()
command -v rabbitmq-server >/dev/null || port_open 5672 || missing+=(rabbitmq-server)
command -v pg_ctlcluster >/dev/null || port_open 5432 || missing+=(postgresql)
command -v redis-server >/dev/null || port_open 6379 || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "missing: ${missing[*]}. Install them (Debian/Ubuntu: sudo apt-get install ${missing[*]})," \
      "or run the services with 'docker compose up rabbitmq postgres' (see compose.yaml)." >&2
    exit 1
  fi
fi

if ! port_open 5672; then
  echo "starting RabbitMQ"
  rabbitmq-server -detached
  rabbitmqctl await_startup >/dev/null
fi
if ! port_open 5432; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
fi
if ! port_open 6379; then
  echo "starting Redis"
  redis-server --daemonize yes --port 6379 --save "" --appendonly no
fi
for _ in $(seq 1 60); do
  port_open 5672 && port_open 5432 && port_open 6379 && exit 0
  sleep 1
done
echo "services did not come up" >&2
exit 1
