#!/usr/bin/env bash
# PostgreSQL, RabbitMQ and Redis answering on their local ports, for `make run` and `make test`.
#
# A service that answers already is left alone (it may run elsewhere, or in docker compose). One
# that does not is started if it is installed here; one that is not installed is installed first
# on Debian (apt-get, as root or through sudo), then started. A PostgreSQL installed here by this
# script gets trust authentication on 127.0.0.1, as OrderHub's local defaults expect (local use
# only; set ORDERHUB_DB_* for anything else). Elsewhere it says what to install, or to use
# `docker compose up`, and fails.
#
#   scripts/ensure-services.sh [VHOST ...]   also creates these RabbitMQ vhosts (for guest)
#
# The ports are ENSURE_PG_PORT, ENSURE_REDIS_PORT, ENSURE_RABBITMQ_PORT (5432, 6379, 5672).
set -u

PG_PORT=${ENSURE_PG_PORT:-5432}
REDIS_PORT=${ENSURE_REDIS_PORT:-6379}
RABBITMQ_PORT=${ENSURE_RABBITMQ_PORT:-5672}

say() { echo "ensure-services: $*"; }
# local_url URL: true when URL is unset or names this machine (a service elsewhere is not ours to start).
local_url() { [ -z "$1" ] || [[ "$1" =~ (@|//)(127\.0\.0\.1|localhost|\[::1\])(:|/|$) ]]; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local name=$1 port=$2
  for _ in $(seq 1 60); do port_open "$port" && return 0; sleep 1; done
  say "$name is still not answering on port $port" >&2
  return 1
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else return 1
  fi
}

# apt_install PACKAGE...: install Debian packages without starting their services (the script
# starts them itself, the same way whether or not this machine runs an init system).
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1 || { [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null 2>&1; }; then
    say "$* not installed here, and this is not a Debian machine where I can install it (apt-get as root or with sudo)." >&2
    say "install PostgreSQL, RabbitMQ (with its management plugin) and Redis, or run 'docker compose up' (docs/deployment.md, Running in containers)." >&2
    return 1
  fi
  say "installing $* (apt-get)"
  local policy=/usr/sbin/policy-rc.d made_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null && as_root chmod +x "$policy" && made_policy=1
  fi
  as_root apt-get -o DPkg::Lock::Timeout=300 update -qq &&
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq \
      --no-install-recommends "$@"
  local status=$?
  [ -n "$made_policy" ] && as_root rm -f "$policy"
  return $status
}

if [ -n "${ORDERHUB_DB_HOST:-}" ] && ! local_url "//${ORDERHUB_DB_HOST}"; then
  say "PostgreSQL is at $ORDERHUB_DB_HOST (ORDERHUB_DB_HOST): not started here"
elif ! port_open "$PG_PORT"; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    apt_install postgresql || exit 1
    version=$(ls /etc/postgresql | sort -V | tail -n1)
    hba=/etc/postgresql/$version/main/pg_hba.conf
    # Trust on loopback for the cluster just made here (OrderHub's local defaults: user postgres, no password).
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  say "starting PostgreSQL"
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start || true
  wait_port PostgreSQL "$PG_PORT" || exit 1
fi
if ! local_url "${ORDERHUB_REDIS_URL:-}"; then
  say "Redis is elsewhere (ORDERHUB_REDIS_URL): not started here"
elif ! port_open "$REDIS_PORT"; then
  if ! command -v redis-server >/dev/null 2>&1; then
    apt_install redis-server || exit 1
  fi
  say "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no
  wait_port Redis "$REDIS_PORT" || exit 1
fi
if ! local_url "${ORDERHUB_BROKER_URL:-}"; then
  say "RabbitMQ is elsewhere (ORDERHUB_BROKER_URL): not started here"
elif ! port_open "$RABBITMQ_PORT"; then
  if ! command -v rabbitmq-server >/dev/null 2>&1; then
    apt_install rabbitmq-server || exit 1
  fi
  say "starting RabbitMQ"
  as_root rabbitmq-server -detached
  wait_port RabbitMQ "$RABBITMQ_PORT" || exit 1
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
