#!/usr/bin/env bash
# Start the local PostgreSQL, RabbitMQ and Redis if they are installed here and not answering.
# On a machine without them (they run elsewhere, or in docker compose) it only reports.
set -u

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local name=$1 port=$2
  for _ in $(seq 1 60); do port_open "$port" && return 0; sleep 1; done
  echo "ensure-services: $name is still not answering on port $port" >&2
  return 1
}

if ! port_open 5432; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "ensure-services: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  wait_port PostgreSQL 5432 || exit 1
fi
if ! port_open 6379; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "ensure-services: starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  fi
  wait_port Redis 6379 || exit 1
fi
if ! port_open 5672; then
  if command -v rabbitmq-server >/dev/null 2>&1; then
    echo "ensure-services: starting RabbitMQ"
    rabbitmq-server -detached
  fi
  wait_port RabbitMQ 5672 || exit 1
fi
# The management API (Flower's queue view) and a separate vhost for the test suite, when the
# broker is this machine's own.
if command -v rabbitmqctl >/dev/null 2>&1; then
  rabbitmqctl await_startup >/dev/null 2>&1 || true
  if command -v rabbitmq-plugins >/dev/null 2>&1; then
    rabbitmq-plugins enable --quiet rabbitmq_management >/dev/null 2>&1 || true
  fi
  for vhost in "$@"; do
    rabbitmqctl -q add_vhost "$vhost" >/dev/null 2>&1 || true
    rabbitmqctl -q set_permissions -p "$vhost" guest ".*" ".*" ".*" >/dev/null 2>&1 || true
  done
fi
exit 0
