#!/usr/bin/env bash
# Start RabbitMQ, PostgreSQL and Redis if they are not answering (a clean machine or CI).
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

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
