#!/usr/bin/env bash
# End-to-end test of the images with a real Docker engine, offline: builds a local base image and
# both images, then runs the parameter server and workers the way ECS does (Docker network, the
# Cloud Map name as the server's alias, read-only root, uid 1000, init process) and checks that
# training completes with every container exiting 0. Also checks that the server stops gracefully
# on SIGTERM, and that docker/compose.yaml (one server, and with compose.sharded.yaml two shards)
# trains a short job with Docker Compose when it is installed (docker compose or docker-compose).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: docker/test-e2e.sh [-h] [--workers N] [--keep] [--no-health]

  --workers N   number of workers (default 2)
  --keep        leave the containers and network for inspection
  --no-health   do not wait for the server's health check (debugging only)
  -h, --help    show this help

Environment:
  BASE_IMAGE       use this base image instead of making one with make-local-base.sh
  E2E_TIMEOUT      seconds training may take (default 300)
  E2E_MODE         SERVER_MODE for the run (default sync)
  E2E_WORKER_ENV   extra worker environment, space separated
                   (default: "EPOCHS=1 TRAIN_EXAMPLES=4000 TEST_EXAMPLES=500")
Starts dockerd when no daemon answers and this runs as root (CI), and stops it again at the end.
EOF
}

# shellcheck source=SCRIPTDIR/../scripts/lib/cli.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib/cli.sh"

workers=2
keep=false
wait_health=true
cli_value_options=(--workers)
option() {
  case "$1" in
    --workers)
      [[ "$2" =~ ^[1-9][0-9]?$ ]] || cli_usage_error "--workers needs a number from 1 to 99, not '$2'"
      workers="$2"
      ;;
    --keep) keep=true ;;
    --no-health) wait_health=false ;;
    *) return 1 ;;
  esac
}
cli_parse test-e2e "$@"

timeout_s="${E2E_TIMEOUT:-300}"
mode="${E2E_MODE:-sync}"
read -r -a worker_env <<<"${E2E_WORKER_ENV:-EPOCHS=1 TRAIN_EXAMPLES=4000 TEST_EXAMPLES=500}"
dns_name="parameter-server.distributed-ps-dev.local"
prefix="distributed-ps-e2e-$$"
network="$prefix"
tag="e2e"
server_image="distributed-ps-parameter-server:$tag"
worker_image="distributed-ps-worker:$tag"

passed=0
failed=0
pass() {
  passed=$((passed + 1))
  echo "PASS: $*"
}
fail() {
  failed=$((failed + 1))
  echo "FAIL: $*"
}
log() { printf '\n== %s\n' "$*"; }

dockerd_pid=""
containers=()
compose_project="$prefix-compose"
cleanup() {
  if ! $keep; then
    if ((${#containers[@]} > 0)); then
      docker rm -f "${containers[@]}" >/dev/null 2>&1 || true
    fi
    docker network rm "$network" >/dev/null 2>&1 || true
    # What a compose run left behind (it normally takes itself down).
    docker ps -aq --filter "label=com.docker.compose.project=$compose_project" | xargs -r docker rm -f >/dev/null 2>&1 || true
    docker network rm "${compose_project}_training" >/dev/null 2>&1 || true
  fi
  if [[ -n "$dockerd_pid" ]]; then
    kill "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

log "Docker engine"
if ! docker info >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v dockerd >/dev/null; then
    echo "no daemon answers; starting dockerd (log: /tmp/dockerd-e2e.log)"
    dockerd >/tmp/dockerd-e2e.log 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 1 60); do
      docker info >/dev/null 2>&1 && break
      sleep 0.5
    done
  fi
  docker info >/dev/null 2>&1 || {
    echo "test-e2e: no Docker daemon (install docker.io and start dockerd)" >&2
    exit 1
  }
fi
docker version --format 'client {{.Client.Version}}, server {{.Server.Version}}'

log "Images"
base="${BASE_IMAGE:-}"
if [[ -z "$base" ]]; then
  base="distributed-ps-base:node24"
  "$here/make-local-base.sh" "$base"
fi
"$here/build-images.sh" --base "$base" --tag "$tag" >"/tmp/$prefix-build.log" 2>&1 || {
  tail -40 "/tmp/$prefix-build.log" >&2
  echo "test-e2e: image build failed (full log /tmp/$prefix-build.log)" >&2
  exit 1
}
rm -f "/tmp/$prefix-build.log"
echo "built $server_image and $worker_image from $base"

# The images themselves must be non-root and stop with SIGTERM; the server must have a health check.
for image in "$server_image" "$worker_image"; do
  config="$(docker image inspect --format '{{.Config.User}} {{.Config.StopSignal}}' "$image")"
  if [[ "$config" == "1000:1000 SIGTERM" ]]; then
    pass "$image runs as 1000:1000 and stops with SIGTERM"
  else
    fail "$image: user/stop signal are '$config', expected '1000:1000 SIGTERM'"
  fi
done
health_cmd="$(docker image inspect --format '{{if .Config.Healthcheck}}{{json .Config.Healthcheck.Test}}{{end}}' "$server_image")"
if [[ "$health_cmd" == *healthcheck.ts* ]]; then
  pass "server image has a health check: $health_cmd"
else
  fail "server image has no health check (got '$health_cmd')"
fi

# Same flags as the ECS task definitions: read-only root, writable /tmp, uid 1000, init process.
like_ecs=(--init --read-only --tmpfs /tmp --user 1000:1000 --network "$network")

start_server() {
  local name="$1"
  shift
  containers+=("$name")
  docker run -d --name "$name" "${like_ecs[@]}" --network-alias "$dns_name" \
    --health-interval 2s --health-start-period 2s --health-retries 3 \
    -e SERVER_PORT=8000 -e SERVER_MODE="$mode" "$@" "$server_image" >/dev/null
}

# Waits until the container's health check passes; returns 1 when it does not within 60 s.
wait_healthy() {
  local name="$1" status=""
  if ! $wait_health; then
    sleep 3
    return 0
  fi
  for _ in $(seq 1 60); do
    status="$(docker inspect --format '{{.State.Health.Status}}' "$name" 2>/dev/null || echo gone)"
    [[ "$status" == healthy ]] && return 0
    [[ "$status" == unhealthy || "$status" == gone ]] && break
    sleep 1
  done
  echo "health of $name: $status" >&2
  docker inspect --format '{{range .State.Health.Log}}{{.Output}}{{end}}' "$name" 2>/dev/null | tail -5 >&2 || true
  return 1
}

docker network create "$network" >/dev/null

log "SIGTERM: the server stops gracefully, with and without an init process"
for variant in init pid1; do
  name="$prefix-sigterm-$variant"
  if [[ "$variant" == init ]]; then
    start_server "$name" -e TOTAL_WORKERS_EXPECTED=1
  else
    # Without --init node is PID 1, which the kernel gives no default SIGTERM action: only the
    # server's own handler can stop it.
    containers+=("$name")
    docker run -d --name "$name" --read-only --tmpfs /tmp --network "$network" \
      --health-interval 2s --health-start-period 2s -e TOTAL_WORKERS_EXPECTED=1 "$server_image" >/dev/null
  fi
  if ! wait_healthy "$name"; then
    fail "SIGTERM ($variant): server never became healthy"
    continue
  fi
  start=$SECONDS
  docker stop -t 30 "$name" >/dev/null
  took=$((SECONDS - start))
  code="$(docker inspect --format '{{.State.ExitCode}}' "$name")"
  if [[ "$code" == 0 && $took -lt 25 ]]; then
    pass "SIGTERM ($variant): server exited 0 after ${took}s"
  else
    fail "SIGTERM ($variant): exit code $code after ${took}s (137 = killed after the timeout: SIGTERM not handled)"
    docker logs --tail 10 "$name" 2>&1 | sed 's/^/    /'
  fi
done

log "Training: server + $workers workers on network $network, server alias $dns_name"
server="$prefix-server"
start_server "$server" -e TOTAL_WORKERS_EXPECTED="$workers"
if wait_healthy "$server"; then
  pass "server healthy"
else
  fail "server did not become healthy"
fi
# The image's CMD carries common/src/node-flags.ts's flags; with --experimental-wasm-fp16 among
# them the server converts float16 with the CPU's instructions and says so in its first line.
# The log read whole first: `grep -q` would close the pipe early and fail it under pipefail.
server_log="$(docker logs "$server" 2>&1)"
if grep -q "float16 conversion hardware" <<<"$server_log"; then
  pass "server converts float16 in hardware (the image's node flags reached it)"
else
  fail "server log does not say 'float16 conversion hardware': the image's CMD lost a node flag?"
  docker logs --tail 5 "$server" 2>&1 | cut -c1-300 | sed 's/^/    /'
fi

worker_names=()
env_args=()
for kv in ${worker_env[@]+"${worker_env[@]}"}; do
  env_args+=(-e "$kv")
done
for i in $(seq 1 "$workers"); do
  name="$prefix-worker-$i"
  containers+=("$name")
  worker_names+=("$name")
  docker run -d --name "$name" "${like_ecs[@]}" \
    -e PARAMETER_SERVER_ADDRESS="$dns_name:8000" ${env_args[@]+"${env_args[@]}"} "$worker_image" >/dev/null
done

echo "waiting up to ${timeout_s}s for training to finish"
if codes="$(timeout "$timeout_s" docker wait "$server" "${worker_names[@]}")"; then
  read -r -a exit_codes <<<"$(echo "$codes" | tr '\n' ' ')"
  all=("$server" "${worker_names[@]}")
  for i in "${!all[@]}"; do
    if [[ "${exit_codes[$i]}" == 0 ]]; then
      pass "${all[$i]} exited 0"
    else
      fail "${all[$i]} exited ${exit_codes[$i]}"
      docker logs --tail 20 "${all[$i]}" 2>&1 | sed 's/^/    /'
    fi
  done
else
  fail "training did not finish within ${timeout_s}s"
  for name in "$server" "${worker_names[@]}"; do
    echo "--- $name"
    docker logs --tail 15 "$name" 2>&1 | sed 's/^/    /'
  done
fi
for name in "${worker_names[@]}"; do
  # The log read whole first: `grep -q` would close the pipe early and fail it under pipefail.
  worker_log="$(docker logs "$name" 2>&1)"
  if [[ "$worker_log" == *"engine onnxruntime"* ]]; then
    pass "$name trained with the onnxruntime engine"
  else
    fail "$name did not train with the onnxruntime engine: $(grep -m1 -E "engine|ONNX Runtime" <<<"$worker_log" | cut -c1-300)"
  fi
done

# The worker image keeps ONNX Runtime's CPU library for its own architecture only.
arch="$(docker run --rm --entrypoint node "$worker_image" -p process.arch)"
ort_dirs="$(docker run --rm --entrypoint sh "$worker_image" -c \
  'cd node_modules/onnxruntime-node/bin/napi-v6 && find . -mindepth 2 -maxdepth 2 -type d | sort | tr "\n" " "')"
if [[ "$ort_dirs" == "./linux/$arch " ]]; then
  pass "the worker image carries ONNX Runtime for linux/$arch only"
else
  fail "the worker image's ONNX Runtime libraries are '$ort_dirs', expected './linux/$arch '"
fi
for image in "$server_image" "$worker_image"; do
  echo "    $image: $(($(docker image inspect --format '{{.Size}}' "$image") / 1000000)) MB"
done

echo "--- last lines of the server log"
docker logs --tail 3 "$server" 2>&1 | cut -c1-300 | sed 's/^/    /'

log "Compose file"
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null; then
  compose=(docker-compose)
else
  compose=()
fi
# A short job run with the compose files as the README tells a user to (`up --scale worker=N`):
# every container of the project exits 0. The images are the ones built above (IMAGE_TAG).
compose_job() {
  local what="$1"
  shift
  local project="$compose_project"
  local run=("${compose[@]}" -p "$project" "$@")
  export IMAGE_TAG="$tag" WORKER_COUNT="$workers" EPOCHS=1 SERVER_MODE="$mode"
  if ! "${run[@]}" up -d --no-build --scale worker="$workers" >"/tmp/$project.log" 2>&1; then
    fail "compose ($what): up failed"
    tail -15 "/tmp/$project.log" | sed 's/^/    /'
    "${run[@]}" down >/dev/null 2>&1 || true
    return
  fi
  local ids
  read -r -a ids <<<"$("${run[@]}" ps -q | tr '\n' ' ')"
  local expected=$(($# / 2 + workers)) # one server per compose file (compose.sharded.yaml adds a shard)
  if ((${#ids[@]} != expected)); then
    fail "compose ($what): ${#ids[@]} containers, expected $expected"
  elif codes="$(timeout "$timeout_s" docker wait "${ids[@]}" | tr '\n' ' ')"; then
    if [[ "$codes" =~ ^(0 )+$ ]]; then
      pass "compose ($what): $expected containers trained and exited 0"
    else
      fail "compose ($what): exit codes $codes"
      "${run[@]}" logs --tail 10 2>&1 | sed 's/^/    /'
    fi
  else
    fail "compose ($what): training did not finish within ${timeout_s}s"
    "${run[@]}" logs --tail 10 2>&1 | sed 's/^/    /'
  fi
  "${run[@]}" down >/dev/null 2>&1 || fail "compose ($what): down failed"
  rm -f "/tmp/$project.log"
}

if ((${#compose[@]} > 0)); then
  if "${compose[@]}" -f "$here/compose.yaml" config -q; then
    pass "compose.yaml is valid for ${compose[*]}"
  else
    fail "compose.yaml is invalid"
  fi
  if "${compose[@]}" -f "$here/compose.yaml" -f "$here/compose.sharded.yaml" config -q; then
    pass "compose.yaml with compose.sharded.yaml (two server shards) is valid"
  else
    fail "compose.sharded.yaml does not combine with compose.yaml"
  fi
  compose_job "one server, $workers workers" -f "$here/compose.yaml"
  compose_job "two server shards, $workers workers" -f "$here/compose.yaml" -f "$here/compose.sharded.yaml"
else
  echo "skipped: neither 'docker compose' nor docker-compose is installed"
fi

echo
echo "e2e: $passed passed, $failed failed"
((failed == 0))
