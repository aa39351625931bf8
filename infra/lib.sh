# shellcheck shell=bash
# Shared by the infra scripts (sourced, not run): the compose command and bounded waits.
# Callers set `set -euo pipefail` themselves.

# `docker compose` (v2) when the plugin is there, else the standalone `docker-compose`.
if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE=(docker-compose)
else
    COMPOSE=()
fi

compose() {
    if [[ ${#COMPOSE[@]} -eq 0 ]]; then
        echo "neither 'docker compose' nor 'docker-compose' is installed" >&2
        return 127
    fi
    "${COMPOSE[@]}" "$@"
}

# The id of a service's container in the current project ($COMPOSE_PROJECT_NAME, -f set by
# COMPOSE_FILE), or nothing.
service_id() {
    compose ps -q "$1" 2>/dev/null | head -n1
}

# wait_healthy <service> <timeout-seconds>: until its health check passes; fails with the
# container's state and last log lines when it exits or the time runs out.
wait_healthy() {
    local service=$1 timeout=$2 deadline id state
    deadline=$((SECONDS + timeout))
    while :; do
        id=$(service_id "$service")
        if [[ -n $id ]]; then
            state=$(docker inspect -f '{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id")
            case $state in
                */healthy) return 0 ;;
                exited/* | dead/*)
                    echo "$service stopped ($state) while waiting for it to be healthy; its last logs:" >&2
                    docker logs --tail 30 "$id" >&2 || true
                    return 1
                    ;;
            esac
        fi
        if ((SECONDS >= deadline)); then
            echo "timed out after ${timeout}s waiting for $service to be healthy (state: ${state:-no container}); its last logs:" >&2
            [[ -z $id ]] || docker logs --tail 30 "$id" >&2 || true
            return 1
        fi
        sleep 0.5
    done
}
