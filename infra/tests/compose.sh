#!/usr/bin/env bash
# The compose stack end to end, under a project name of its own (unique per run):
#   1. up: s3 healthy, train exits 0, predict healthy (bounded wait, time reported)
#   2. the original's request, POST /predict {"image": [64 numbers]}, from the host to the
#      published loopback port and from another container on the stack's network by name
#   3. restart predict: it reloads from S3 and reports the same model id (GET /model);
#      run the train service again: predict serves the new version without a restart
#   4. stop s3: predict keeps answering from memory
#   5. down -v: no container, network or volume of the project is left
# Everything it starts is removed on exit, pass or fail. Images come from `make image`.
set -euo pipefail

cd "$(dirname "$0")/../.."
# shellcheck source=infra/lib.sh
source infra/lib.sh

tag=${IMAGE_TAG:-latest}
timeout_s=${STACK_TIMEOUT:-180}
max_predict_bytes=${MAX_PREDICT_IMAGE_BYTES:-20000000}
probe=${PROBE:-target/static/x86_64-unknown-linux-gnu/release/probe}

export COMPOSE_FILE=infra/docker-compose.yml
COMPOSE_PROJECT_NAME="digits-test-$(date +%s)-$$"
export COMPOSE_PROJECT_NAME
export PREDICT_PORT= # empty: an ephemeral port on 127.0.0.1
export MODEL_REFRESH_SECONDS=2
export IMAGE_TAG=$tag
project=$COMPOSE_PROJECT_NAME
client=$project-client

log() { echo "compose.sh: $*"; }
fail() {
    echo "compose.sh: FAIL: $*" >&2
    exit 1
}

cleanup() {
    local rc=$?
    if ((rc != 0)); then
        echo "compose.sh: failed; logs of $project:" >&2
        compose logs --no-color --tail 40 >&2 2>&1 || true
    fi
    docker rm -f -v "$client" >/dev/null 2>&1 || true
    compose down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1 || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

docker info >/dev/null 2>&1 || fail "cannot reach the Docker engine (docker info failed)"
compose version >/dev/null || fail "docker compose / docker-compose is not installed"
for image in predict trainer s3s-fs; do
    docker image inspect "digits-$image:$tag" >/dev/null 2>&1 ||
        fail "image digits-$image:$tag is missing: run 'make image'"
done
[[ -x $probe ]] || fail "$probe is missing: run 'make image'"

# The images' contract: non-root, and predict checks its own health on port 8000.
for image in predict trainer s3s-fs; do
    user=$(docker image inspect -f '{{.Config.User}}' "digits-$image:$tag")
    [[ $user == 10001:10001 ]] || fail "digits-$image runs as '${user:-root}', not 10001:10001"
done
meta=$(docker image inspect -f '{{json .Config.ExposedPorts}} {{json .Config.Healthcheck.Test}}' "digits-predict:$tag")
[[ $meta == *'"8000/tcp"'*'"--check"'* ]] || fail "digits-predict: expected port 8000 and a 'predict --check' health check, got $meta"

size=$(docker image inspect -f '{{.Size}}' "digits-predict:$tag")
log "predict image: $size bytes (limit $max_predict_bytes)"
((size <= max_predict_bytes)) || fail "the predict image is $size bytes, over $max_predict_bytes"

# The original's request: the first row of the embedded data, label column (the last) dropped.
row=$(sed -n 2p data/digits.csv)
label=${row##*,}
body="{\"image\": [${row%,*}]}"
[[ $(tr -cd ',' <<<"${row%,*}" | wc -c) -eq 63 ]] || fail "expected 64 features in data/digits.csv"

# check_prediction <where> <answer>: the answer names the row's class.
check_prediction() {
    local where=$1 answer=$2 class
    class=$(grep -oE '"predicted_class": *[0-9]+' <<<"$answer" | grep -oE '[0-9]+$') ||
        fail "$where: no predicted_class in: $answer"
    [[ $class == "$label" ]] || fail "$where: predicted $class, the label is $label: $answer"
    log "$where: predicted_class $class (label $label)"
}

host_url() { echo "http://$(compose port predict 8000)"; }

model_id() {
    local answer
    answer=$("$probe" "$(host_url)/model") || fail "GET /model failed"
    grep -oE '"model_id": *"[0-9a-f]+"' <<<"$answer" | grep -oE '[0-9a-f]{16,}' ||
        fail "no model_id in GET /model: $answer"
}

# 1. up
start=$SECONDS
log "starting project $project"
timeout "$timeout_s" "${COMPOSE[@]}" up -d >/dev/null 2>&1 ||
    fail "'up' failed or took over ${timeout_s}s"
wait_healthy predict "$timeout_s"
log "stack up and predict healthy in $((SECONDS - start))s"
train_exit=$(docker inspect -f '{{.State.ExitCode}}' "$(service_id train)")
[[ $train_exit == 0 ]] || fail "train exited with $train_exit"

# 2. the original's request, from the host and from inside the stack's network
check_prediction "host $(host_url)" "$("$probe" --post "$body" "$(host_url)/predict")"
network=$(docker network ls -q --filter "label=com.docker.compose.project=$project" | head -n1)
[[ -n $network ]] || fail "no network for project $project"
answer=$(docker run --rm --name "$client" --network "$network" --entrypoint /usr/local/bin/probe \
    "digits-s3s-fs:$tag" --post "$body" http://predict:8000/predict) ||
    fail "POST http://predict:8000/predict from a container on the stack's network failed"
check_prediction "container -> http://predict:8000" "$answer"

# 3. a restart reloads the same model from S3
id_before=$(model_id)
compose restart predict >/dev/null 2>&1
wait_healthy predict 60
id_after=$(model_id)
[[ $id_before == "$id_after" ]] || fail "model id changed across a restart: $id_before -> $id_after"
log "restart: same model id $id_after"

model_version() {
    local answer
    answer=$("$probe" "$(host_url)/model") || fail "GET /model failed"
    grep -oE '"version": *"[^"]+"' <<<"$answer" | head -n1 | sed -E 's/.*"([^"]+)"$/\1/'
}
version_before=$(model_version)
compose run --rm --no-deps train >/dev/null 2>&1 || fail "running the train service again failed"
start=$SECONDS
until [[ $(model_version) != "$version_before" ]]; do
    ((SECONDS - start < 30)) || fail "the new version was not served within 30 s (still $version_before)"
    sleep 1
done
restarts=$(docker inspect -f '{{.RestartCount}}' "$(service_id predict)")
log "train again: predict serves $(model_version) (was $version_before) after $((SECONDS - start))s, $restarts restarts"

# 4. S3 gone: predict answers from memory
compose stop s3 >/dev/null 2>&1
check_prediction "with s3 stopped" "$("$probe" --post "$body" "$(host_url)/predict")"
"$probe" "$(host_url)/health" >/dev/null || fail "GET /health failed with s3 stopped"

# 5. down leaves nothing behind
compose down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1
filter="label=com.docker.compose.project=$project"
left="$(docker ps -aq --filter "$filter")$(docker network ls -q --filter "$filter")$(docker volume ls -q --filter "$filter")"
[[ -z $left ]] || fail "left behind after down: $left"
log "down: no container, network or volume left"
log "PASS"
