#!/usr/bin/env bash
# make test's run with PostgreSQL: the whole suite on it, and the unit suite again on
# SQLite (the embedded default), in four lanes at once so the two cores stay busy while
# the multi-process tests wait on their processes:
#
#   processes  the multi-process tests (-m "integration and not e2e") on PostgreSQL
#   browser    the browser tests (-m e2e) on PostgreSQL
#   units      the unit suite on PostgreSQL     } niced, so the timed multi-process and
#   sqlite     the unit suite on SQLite         } browser tests keep the CPU they need
#
# Each lane has its own PostgreSQL database (pytest-django creates test_<name> from it),
# its own Redis database and its own var directory, so no lane sees another's rows, keys
# or files. Each lane's output is printed whole when all are done, with its wall time.
#
# Usage: scripts/test-lanes.sh VENV_DIR [pytest args...]   (the Makefile's pytest target)
set -u

venv=$1
shift
pytest=("$venv/bin/pytest" -p no:cacheprovider)
pg_base=${PG_BASE_URL:-postgres://postgres@127.0.0.1:5432}
redis_base=${TEST_REDIS_BASE_URL:-redis://127.0.0.1:6379}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# lane NAME NICENESS -- command...: run it in the background, its output into
# $logs/NAME.log, its exit status and wall seconds into $logs/NAME.status.
lane() {
  local name=$1 niceness=$2
  shift 3
  (
    started=$SECONDS
    nice -n "$niceness" "$@" >"$logs/$name.log" 2>&1
    status=$?
    echo "$status $((SECONDS - started))" >"$logs/$name.status"
  ) &
}

echo "make test: PostgreSQL ($pg_base): the multi-process, browser and unit suites, and the unit"
echo "make test: suite again on SQLite, in four lanes at once"

lane processes 0 -- env DATABASE_URL="$pg_base/pollstr" TEST_REDIS_URL="$redis_base/15" \
  POLLSTR_VAR_DIR="$(mktemp -d)" "${pytest[@]}" -m "integration and not e2e" "$@"
lane browser 0 -- env DATABASE_URL="$pg_base/pollstr_browser" TEST_REDIS_URL="$redis_base/13" \
  POLLSTR_VAR_DIR="$(mktemp -d)" "${pytest[@]}" -m e2e "$@"
lane units 10 -- env DATABASE_URL="$pg_base/pollstr_units" TEST_REDIS_URL="$redis_base/11" \
  POLLSTR_VAR_DIR="$(mktemp -d)" "${pytest[@]}" -m "not integration and not e2e" "$@"
lane sqlite 10 -- env -u DATABASE_URL TEST_REDIS_URL="$redis_base/14" \
  POLLSTR_VAR_DIR="$(mktemp -d)" "${pytest[@]}" -m "not integration and not e2e" "$@"
wait

failed=0
for name in processes browser units sqlite; do
  read -r status seconds <"$logs/$name.status"
  echo
  echo "================ make test, lane '$name': exit $status after ${seconds}s ================"
  cat "$logs/$name.log"
  [ "$status" -eq 0 ] || failed=1
done
echo
for name in processes browser units sqlite; do
  read -r status seconds <"$logs/$name.status"
  echo "make test: lane $name: $([ "$status" -eq 0 ] && echo passed || echo "FAILED (exit $status)") in ${seconds}s"
done
exit $failed
