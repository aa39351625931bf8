#!/usr/bin/env bash
# `make up` / `make down`: the local compose stack (infra/docker-compose.yml).
#
#   infra/stack.sh up     start s3, train (one-shot) and predict; wait until predict is healthy
#   infra/stack.sh down   stop everything and remove containers, network and the S3 volume
#
# Environment: COMPOSE_PROJECT_NAME [digits], PREDICT_PORT [8000] (published on 127.0.0.1),
# IMAGE_TAG [latest], UP_TIMEOUT seconds [180].
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=infra/lib.sh
source infra/lib.sh

export COMPOSE_FILE=infra/docker-compose.yml
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-digits}
timeout_s=${UP_TIMEOUT:-180}
compose version >/dev/null

case ${1:-} in
    up)
        start=$SECONDS
        # `up` itself waits for s3 to be healthy and for train to finish.
        timeout "$timeout_s" "${COMPOSE[@]}" up -d || {
            echo "stack.sh: 'up' failed or took over ${timeout_s}s; 'make down' cleans up. Logs:" >&2
            compose logs --tail 30 >&2 || true
            exit 1
        }
        wait_healthy predict "$timeout_s"
        echo "stack.sh: up in $((SECONDS - start))s; predict on http://$(compose port predict 8000)"
        ;;
    down)
        compose down --volumes --remove-orphans --timeout 10
        ;;
    *)
        echo "usage: infra/stack.sh up|down" >&2
        exit 2
        ;;
esac
