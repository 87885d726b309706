#!/usr/bin/env bash
# Make sure the services the test suite uses are up: Redis (required), PostgreSQL (used
# when reachable), and Debian's Chromium (browser tests), docker-compose (compose file
# checks), nginx (proxy tests) and prometheus (promtool, alert rules). Starts what it can;
# otherwise says exactly what to run. Prints the environment lines to use.
set -u

REDIS_HOST=${REDIS_HOST:-127.0.0.1}
REDIS_PORT=${REDIS_PORT:-6379}
PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
is_root() { [ "$(id -u)" = "0" ]; }
say() { echo "ensure-services: $*" >&2; }

redis_up() {
  if command -v redis-cli >/dev/null 2>&1; then
    redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG
  else
    (exec 3<>"/dev/tcp/$REDIS_HOST/$REDIS_PORT") 2>/dev/null
  fi
}
if ! redis_up; then
  if command -v redis-server >/dev/null 2>&1; then
    say "Redis is down on $REDIS_HOST:$REDIS_PORT; starting it."
    mkdir -p /tmp/pollstr-redis
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" \
      --appendonly no --dir /tmp/pollstr-redis --logfile /tmp/pollstr-redis/redis.log >/dev/null
    for _ in $(seq 1 50); do redis_up && break; sleep 0.1; done
  fi
fi
if ! redis_up; then
  say "Redis is not reachable on $REDIS_HOST:$REDIS_PORT and could not be started."
  say "Install and start it: apt-get install redis-server && redis-server --daemonize yes"
  exit 1
fi

pg_up() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; }
if command -v pg_isready >/dev/null 2>&1 && ! pg_up && is_root && command -v pg_ctlcluster >/dev/null 2>&1; then
  say "PostgreSQL is down on $PG_HOST:$PG_PORT; starting it."
  for version in $(ls /etc/postgresql 2>/dev/null); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
  done
  for _ in $(seq 1 50); do pg_up && break; sleep 0.2; done
fi
# The databases make test's lanes name (scripts/test-lanes.sh): the test runner connects
# to one around its test database's creation, and a new machine has only `test` and
# `postgres`.
PG_DBS=${PG_DBS:-pollstr pollstr_browser pollstr_units}
if command -v psql >/dev/null 2>&1 && pg_up; then
  for PG_DB in $PG_DBS; do
    if ! psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" 2>/dev/null | grep -q 1; then
      say "Creating the PostgreSQL database $PG_DB."
      createdb -h "$PG_HOST" -p "$PG_PORT" -U postgres "$PG_DB" 2>/dev/null \
        || say "Could not create $PG_DB: createdb -h $PG_HOST -U postgres $PG_DB"
    fi
  done
fi

if [ ! -x /usr/bin/chromium ]; then
  if is_root && command -v apt-get >/dev/null 2>&1; then
    say "Installing Debian's chromium for the browser tests (apt-get)."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/tmp/pollstr-apt.log 2>&1 \
      || { say "apt-get install chromium failed; see /tmp/pollstr-apt.log"; exit 1; }
  else
    say "The browser tests need Debian's Chromium at /usr/bin/chromium."
    say "Install it as root: apt-get update && apt-get install -y chromium"
    exit 1
  fi
fi

# Debian's docker-compose (1.29) validates docker-compose.yml without a Docker engine
# (tests/integration/test_compose.py runs `docker-compose config`).
if ! command -v docker-compose >/dev/null 2>&1; then
  if is_root && command -v apt-get >/dev/null 2>&1; then
    say "Installing Debian's docker-compose for the compose file checks (apt-get)."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose) >/tmp/pollstr-apt-compose.log 2>&1 \
      || { say "apt-get install docker-compose failed; see /tmp/pollstr-apt-compose.log"; exit 1; }
  else
    say "The compose checks need Debian's docker-compose: apt-get install -y docker-compose"
    exit 1
  fi
fi

# Debian's nginx runs the reverse proxy of docker-compose.yml in front of two local web
# processes (tests/integration/test_proxy.py); Debian's prometheus ships promtool, which
# checks and unit-tests the alert rules (tests/test_monitoring.py). Installing them starts
# nothing: the tests run nginx with a configuration of their own.
install_debian_package() {  # program package purpose
  if ! command -v "$1" >/dev/null 2>&1; then
    if is_root && command -v apt-get >/dev/null 2>&1; then
      say "Installing Debian's $2 for $3 (apt-get)."
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2") >"/tmp/pollstr-apt-$2.log" 2>&1 \
        || { say "apt-get install $2 failed; see /tmp/pollstr-apt-$2.log"; exit 1; }
    else
      say "$3 needs Debian's $2: apt-get install -y $2"
      exit 1
    fi
  fi
}
install_debian_package nginx nginx "the proxy tests"
install_debian_package promtool prometheus "the alert rule checks"
# GNU gettext's msgfmt compiles the translation catalogues (make's `translations` target,
# the tests' catalogue fixture).
install_debian_package msgfmt gettext "compiling the translations"
