# shellcheck shell=bash
# Sourced by tests/lambda.sh and tests/clients/run.sh: start a server in a process group of
# its own, wait until it is ready, and stop (only) what was started, by id.
#
# Sourcing it creates $work, a scratch directory, and sets an EXIT trap that stops every
# process started here and then removes $work. The sourcing script defines
# `fail MESSAGE` (print, show its logs, exit 1).

started_pids=()
work="$(mktemp -d)"
trap 'stop_started; rm -rf "$work"' EXIT

# start_in_background LOG COMMAND...: run COMMAND in a new session (so it and its children
# are one process group whose id is its pid), stdout and stderr to LOG; sets $started_pid.
start_in_background() {
    local log="$1"
    shift
    setsid "$@" >"$log" 2>&1 &
    started_pid=$!
    started_pids+=("$started_pid")
}

# wait_until_ready PID WHAT SECONDS CHECK...: run CHECK every 0.1 s until it succeeds;
# fail when PID exits first or SECONDS pass.
wait_until_ready() {
    local pid="$1" what="$2" seconds="$3"
    shift 3
    local tries=$((seconds * 10))
    for _ in $(seq "$tries"); do
        "$@" && return 0
        kill -0 "$pid" 2>/dev/null || fail "$what exited during start-up"
        sleep 0.1
    done
    fail "$what was not ready within $seconds s"
}

# port_open PORT: true once something accepts TCP connections on 127.0.0.1:PORT. Sends
# nothing: an HTTP probe of `cargo lambda watch` would itself be an invocation.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# stop_started: SIGTERM each started process group, give it 5 s, then SIGKILL.
stop_started() {
    local pid
    for pid in "${started_pids[@]}"; do
        kill -0 "$pid" 2>/dev/null || continue
        kill -TERM -- "-$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
