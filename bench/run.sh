#!/usr/bin/env bash
# Side-by-side benchmark of switchyard vs nginx and HAProxy.
# Usage: bench/run.sh [--quick] [--sections rps,latency,bodies,memory,scaling,reload] [--help] ...
# See bench/README.md.  Writes bench/results/latest.md (and latest.json) and prints the table.
set -u

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

NO_INSTALL=0
KEEP=0
for arg in "$@"; do
    case "$arg" in
        --no-install) NO_INSTALL=1 ;;
        --keep) KEEP=1 ;;
        -h|--help)
            if command -v python3 >/dev/null 2>&1; then exec python3 "$HERE/bench.py" --help; fi
            sed -n '2,4p' "$0"; exit 0 ;;
    esac
done

# ---- tools
need_pkgs=()
command -v nginx   >/dev/null 2>&1 || need_pkgs+=(nginx)
command -v haproxy >/dev/null 2>&1 || need_pkgs+=(haproxy)
command -v wrk     >/dev/null 2>&1 || need_pkgs+=(wrk)
command -v h2load  >/dev/null 2>&1 || need_pkgs+=(nghttp2-client)
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
command -v taskset >/dev/null 2>&1 || need_pkgs+=(util-linux)
command -v ss      >/dev/null 2>&1 || need_pkgs+=(iproute2)
command -v valgrind >/dev/null 2>&1 || need_pkgs+=(valgrind)
command -v curl    >/dev/null 2>&1 || need_pkgs+=(curl)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    if [ "$NO_INSTALL" = 1 ]; then
        echo "error: missing: ${need_pkgs[*]} (and --no-install was given)" >&2
        exit 1
    fi
    echo "installing: ${need_pkgs[*]}" >&2
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    APTLOG="$(mktemp /tmp/switchyard-bench-apt.XXXXXX.log)"
    $SUDO timeout 300 apt-get update -q >"$APTLOG" 2>&1 || echo "warning: apt-get update failed" >&2
    if ! $SUDO timeout 600 apt-get install -y -q --no-install-recommends "${need_pkgs[@]}" >>"$APTLOG" 2>&1; then
        tail -20 "$APTLOG" >&2
        echo "error: apt-get install ${need_pkgs[*]} failed (log: $APTLOG)" >&2
        exit 1
    fi
    rm -f "$APTLOG"
fi

# ---- limits: many connections
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---- scratch dir and cleanup
SCRATCH="$(mktemp -d /tmp/switchyard-bench.XXXXXX)"
chmod 755 "$SCRATCH"
PY_PID=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    if [ -n "$PY_PID" ] && kill -0 "$PY_PID" 2>/dev/null; then
        kill -TERM "$PY_PID" 2>/dev/null
        for _ in $(seq 1 150); do           # up to 15 s for its own cleanup
            kill -0 "$PY_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$PY_PID" 2>/dev/null
    fi
    # fallback: anything the orchestrator started and left behind
    if [ -f "$SCRATCH/pids" ]; then
        while read -r kind pid; do
            [ -d "/proc/$pid" ] || continue
            if [ "$kind" = pgid ]; then kill -TERM -- "-$pid" 2>/dev/null; else kill -TERM "$pid" 2>/dev/null; fi
        done < "$SCRATCH/pids"
        sleep 0.5
        while read -r kind pid; do
            [ -d "/proc/$pid" ] || continue
            if [ "$kind" = pgid ]; then kill -KILL -- "-$pid" 2>/dev/null; else kill -KILL "$pid" 2>/dev/null; fi
        done < "$SCRATCH/pids"
    fi
    if [ "$KEEP" = 1 ]; then
        echo "scratch dir kept: $SCRATCH" >&2
    else
        rm -rf "$SCRATCH"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# run in the background and wait, so that a signal to this script is handled at once
python3 "$HERE/bench.py" --scratch "$SCRATCH" "$@" &
PY_PID=$!
wait "$PY_PID"
rc=$?
PY_PID=""
exit "$rc"
