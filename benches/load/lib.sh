# What the load benchmark scripts of benches/load/ share; sourced, not run.

# as_root CMD...: from scripts/lib.sh.
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

# servers_stopped_on_exit NAME: makes $RUN, a scratch folder under $WORK whose pids/ the driver
# fills with the pid of every server it starts (each in its own process group) and whose work/
# holds their logs. When the script ends (error, Ctrl-C), servers still running are stopped, the
# logs of the run are kept in $WORK/last-run-logs, and $RUN is removed.
servers_stopped_on_exit() {
    BENCH_NAME=$1
    RUN=$(mktemp -d "$WORK/run.XXXXXX")
    mkdir -p "$RUN/pids" "$RUN/work"
    trap stop_servers EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

stop_servers() {
    local f pid
    for f in "$RUN"/pids/*; do
        [ -e "$f" ] || continue
        pid=$(basename "$f")
        if kill -0 "$pid" 2>/dev/null; then
            echo "$BENCH_NAME: stopping $(cat "$f") (pid $pid)" >&2
            kill -TERM -- "-$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            kill -KILL -- "-$pid" 2>/dev/null || true
        fi
    done
    if ls "$RUN"/work/*.log >/dev/null 2>&1; then
        rm -rf "$WORK/last-run-logs" && mkdir -p "$WORK/last-run-logs" && cp "$RUN"/work/*.log "$WORK/last-run-logs/" || true
    fi
    rm -rf "$RUN"
}
