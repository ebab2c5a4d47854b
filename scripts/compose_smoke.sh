#!/usr/bin/env bash
# End-to-end check of the container setup with `docker compose` (v2):
# build, start with 3 workers, send MNIST test digits (sync and async), check the answers and
# that several workers served them, scale down to 1 worker, check again; then, with no worker,
# queue jobs, SIGKILL Redis and start it again, bring a worker back: every job must be
# answered. Tear down.
#
#   bash scripts/compose_smoke.sh
#
# Offline: the model is trained from a local MNIST copy (docker-compose.test.yml), taken from
# MNIST_HOST_DIR (default: MNIST_DATA_DIR). CONTAINERS_SETUP: a script to run first if
# `docker compose` or its engine does not answer. Knobs: SMOKE_WORKERS (3),
# SMOKE_PREDICTIONS (120), TRAIN_LIMIT (10000), API_PORT (a free one), PYTHON (python3,
# stdlib only).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
WORKERS=${SMOKE_WORKERS:-3}
PREDICTIONS=${SMOKE_PREDICTIONS:-120}
SETUP_SCRIPT=${CONTAINERS_SETUP:-}

say() { printf 'smoke: %s\n' "$*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# --- 1. docker compose and its engine must answer ------------------------------------------
# The client and the compose plugin can be installed while no engine runs (after a reboot,
# say), so ask the engine too: `docker info` talks to the daemon, `compose version` does not.
engine_answers() { docker compose version >/dev/null 2>&1 && docker info >/dev/null 2>&1; }
if ! engine_answers; then
  if [[ -n $SETUP_SCRIPT && -f $SETUP_SCRIPT ]]; then
    say "docker compose or its engine does not answer; running $SETUP_SCRIPT"
    # From /: a container engine started here keeps its working directory, which must
    # outlive this checkout.
    (cd / && bash "$SETUP_SCRIPT")
  fi
  engine_answers || { say "FAIL: needs docker compose (v2) and a running engine"; exit 1; }
fi
say "$(docker compose version)"

MNIST_HOST_DIR=${MNIST_HOST_DIR:-${MNIST_DATA_DIR:-}}
[[ -n $MNIST_HOST_DIR && -f $MNIST_HOST_DIR/t10k-images-idx3-ubyte.gz ]] || {
  say "FAIL: no MNIST IDX files in $MNIST_HOST_DIR (set MNIST_HOST_DIR)"
  exit 1
}
MNIST_HOST_DIR=$(cd "$MNIST_HOST_DIR" && pwd)
export MNIST_HOST_DIR
export TRAIN_LIMIT=${TRAIN_LIMIT:-10000}
# Compose requires a Redis password; a throwaway one for this run unless one is given.
export REDIS_PASSWORD=${REDIS_PASSWORD:-$("$PYTHON" -c 'import secrets; print(secrets.token_hex(16))')}

# A project name and port of our own: several runs (or a real deployment) can coexist.
export COMPOSE_PROJECT_NAME="mnist-smoke-$$-$(date +%s)"
API_PORT=${API_PORT:-$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
export API_PORT
URL="http://127.0.0.1:$API_PORT"

compose() { docker compose -f docker-compose.yml -f docker-compose.test.yml "$@"; }

# `up`, tried a second time when the engine itself fails (a container runtime can answer
# "broken pipe" while starting many containers at once); a second failure is final.
compose_up() {
  compose up "$@" >"$LOGS/up.log" 2>&1 && return 0
  if grep -q "Error response from daemon" "$LOGS/up.log"; then
    say "the container engine failed ($(grep -m1 'Error response from daemon' "$LOGS/up.log")); trying once more"
    sleep 2
    compose up "$@" >"$LOGS/up.log" 2>&1 && return 0
  fi
  cat "$LOGS/up.log"
  return 1
}
LOGS=$(mktemp -d)

# --- 6. always tear down; on failure show what the containers said -------------------------
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ $rc -ne 0 ]]; then
    say "FAIL (exit $rc); containers and the tail of their logs:"
    compose ps -a 2>&1 || true
    compose logs --no-color --tail 40 2>&1 || true
    [[ -s $LOGS/build.log ]] && { say "tail of the build log:"; tail -n 30 "$LOGS/build.log"; }
  fi
  say "tearing down $COMPOSE_PROJECT_NAME"
  compose down -v --remove-orphans --timeout 45 >"$LOGS/down.log" 2>&1 \
    || { say "down failed:"; tail -n 20 "$LOGS/down.log"; }
  rm -rf "$LOGS"
  [[ $rc -eq 0 ]] && say "PASS" || say "FAIL"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 2. build and start with several workers -----------------------------------------------
say "project $COMPOSE_PROJECT_NAME, API on $URL, MNIST from $MNIST_HOST_DIR, TRAIN_LIMIT=$TRAIN_LIMIT"
# The optional "flower" profile stays out of this run; its service must still be valid.
compose --profile flower config --quiet || { say "FAIL: the flower profile does not parse"; exit 1; }
started=$(now)
compose build >"$LOGS/build.log" 2>&1
say "build: $(since "$started") s (api + worker images)"
: >"$LOGS/build.log"  # built: a later failure should not show build output

image_mb() { docker image inspect -f '{{.Size}}' "$1" | awk '{ printf "%.0f", $1 / 1e6 }'; }
api_image=$(compose config --images | grep -- '-api:' | head -n 1)
worker_image=$(compose config --images | grep -- '-worker:' | head -n 1)
base_mb=$(image_mb python:3.11-slim)
api_mb=$(image_mb "$api_image")
worker_mb=$(image_mb "$worker_image")
# Both images share the python:3.11-slim layers; what differs is what each adds on top.
say "image $api_image: ${api_mb} MB ($((api_mb - base_mb)) MB over python:3.11-slim, ${base_mb} MB)"
say "image $worker_image: ${worker_mb} MB ($((worker_mb - base_mb)) MB over python:3.11-slim)"
if (((api_mb - base_mb) * 3 > worker_mb - base_mb)); then
  say "FAIL: the API image should add far less than the worker image (no scikit-learn stack)"
  exit 1
fi

started=$(now)
compose_up -d --wait --wait-timeout 300 --scale "worker=$WORKERS" || exit 1
say "up and healthy: $(since "$started") s (redis, train, api, $WORKERS workers)"
say "trainer: $(compose logs --no-color --no-log-prefix train | grep -oE 'train: test accuracy [0-9.]+, ECE [0-9.]+' | tail -n 1)"
running=$(compose ps -q worker | wc -l)
[[ $running -eq $WORKERS ]] || { say "FAIL: $running workers running, expected $WORKERS"; exit 1; }

# --- 3. predictions spread over the workers ------------------------------------------------
min_workers=$((WORKERS > 1 ? 2 : 1))
"$PYTHON" scripts/compose_smoke.py --url "$URL" --data-dir "$MNIST_HOST_DIR" \
  --count "$PREDICTIONS" --concurrency 12 --min-workers "$min_workers" --label "$WORKERS workers"

# --- 4. scale down: the service keeps answering --------------------------------------------
started=$(now)
compose_up -d --wait --wait-timeout 120 --no-recreate --scale worker=1 || exit 1
running=$(compose ps -q worker | wc -l)
say "scaled down to $running worker in $(since "$started") s"
[[ $running -eq 1 ]] || { say "FAIL: $running workers running, expected 1"; exit 1; }
# A small sample: this step shows the service still answers; accuracy was checked above.
"$PYTHON" scripts/compose_smoke.py --url "$URL" --data-dir "$MNIST_HOST_DIR" \
  --count 30 --offset "$PREDICTIONS" --concurrency 4 --min-accuracy 0.8 --max-workers 1 \
  --label "1 worker"

# --- 5. durability: jobs accepted while no worker runs survive a Redis crash ---------------
DURABLE=${SMOKE_DURABLE_JOBS:-40}
compose_up -d --wait --wait-timeout 120 --no-recreate --scale worker=0 || exit 1
"$PYTHON" scripts/compose_smoke.py --url "$URL" --data-dir "$MNIST_HOST_DIR" \
  --count "$DURABLE" --offset "$((PREDICTIONS + 30))" --submit-to "$LOGS/jobs.txt" \
  --label "durability"
compose kill -s SIGKILL redis >"$LOGS/kill.log" 2>&1
started=$(now)
compose_up -d --wait --wait-timeout 120 --no-recreate --scale worker=1 || exit 1
say "redis killed and started again, 1 worker back: $(since "$started") s"
"$PYTHON" scripts/compose_smoke.py --url "$URL" --data-dir "$MNIST_HOST_DIR" \
  --collect-from "$LOGS/jobs.txt" --poll-timeout 120 --min-accuracy 0.9 --label "durability"
