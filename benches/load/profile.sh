#!/usr/bin/env bash
# Where `serve` spends its CPU under load: runs it as run.sh does (pinned to CPU
# $SERVER_CPU, wrk on CPU $WRK_CPU, 127.0.0.1 only), samples it with `perf record -e
# cpu-clock` (a software clock: this works in VMs without hardware counters) while wrk
# loads it, and prints flat profiles by shared object and by symbol.
#
#   benches/load/profile.sh [SCENARIO]          # default hello-c64
#   SERVE_BIN=target/release/wsgi-serve SECONDS_PROFILED=5 benches/load/profile.sh echo-c64
#
# Settings (environment): SERVE_BIN (default: target/release/wsgi-serve, built if
# missing), SECONDS_PROFILED=5, FREQ=1999 (samples/s), CALL_GRAPH=0 (1: also record DWARF
# call graphs and print the heaviest call chains; much larger data), OUR_THREADS=8,
# SERVE_ARGS (more options for serve, which otherwise runs in-process with its other defaults,
# the access log on, as run.sh's serve-axum row does; SERVE_ARGS="--log-level warn" turns the
# log off, SERVE_ARGS="--processes 1" profiles the host and its worker),
# SERVER_CPU=1, WRK_CPU=0, PORT=18999, VENV (default benches/load/.venv, made by run.sh),
# OUT_DIR (default: a new temporary directory; perf.data and the reports stay there).
set -euo pipefail

LOAD_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$(dirname "$LOAD_DIR")")
APPS=$LOAD_DIR/apps
HOST=127.0.0.1
SCENARIO=${1:-hello-c64}
SECONDS_PROFILED=${SECONDS_PROFILED:-5}
FREQ=${FREQ:-1999}
CALL_GRAPH=${CALL_GRAPH:-0}
OUR_THREADS=${OUR_THREADS:-8}
SERVER_CPU=${SERVER_CPU:-1}
WRK_CPU=${WRK_CPU:-0}
PORT=${PORT:-18999}
VENV=${VENV:-$LOAD_DIR/.venv}
OUT_DIR=${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/wsgi-profile.XXXXXX")}
SERVE_BIN=${SERVE_BIN:-$ROOT/target/release/wsgi-serve}
read -ra SERVE_EXTRA <<<"--processes 0 ${SERVE_ARGS:-}"
mkdir -p "$OUT_DIR"

die() {
    printf '%s\n' "profile.sh: $*" >&2
    exit 1
}

case $SCENARIO in
hello-c64) MOD=hello URL_PATH=/ CONNS=64 LUA="" ;;
hello-c1) MOD=hello URL_PATH=/ CONNS=1 LUA="" ;;
flask-c64) MOD=flask_app URL_PATH=/json CONNS=64 LUA="" ;;
django-c64) MOD=django_app URL_PATH=/plain CONNS=64 LUA="" ;;
stream-c64) MOD=stream URL_PATH=/stream CONNS=64 LUA="" ;;
echo-c64) MOD=echo URL_PATH=/echo CONNS=64 LUA=$LOAD_DIR/post64k.lua ;;
*) die "unknown scenario '$SCENARIO' (hello-c64 hello-c1 flask-c64 django-c64 stream-c64 echo-c64)" ;;
esac
command -v perf >/dev/null || die "perf is missing (apt-get install -y linux-perf)"
command -v wrk >/dev/null || die "wrk is missing (run.sh installs it)"
[[ -x $VENV/bin/python ]] || die "no venv at $VENV (run.sh makes it)"
if [[ ! -x $SERVE_BIN ]]; then
    (cd "$ROOT" && cargo build --quiet --release -p wsgi-serve)
fi
! (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null || die "port $PORT is in use"

SERVER_PID=""
cleanup() {
    if [[ -n $SERVER_PID ]]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

py_lib=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
(cd "$APPS" && exec taskset -c "$SERVER_CPU" env "LD_LIBRARY_PATH=$py_lib" "$SERVE_BIN" \
    --bind "$HOST:$PORT" --threads "$OUR_THREADS" --venv "$VENV" ${SERVE_EXTRA[@]+"${SERVE_EXTRA[@]}"} \
    "$APPS/$MOD.py") >"$OUT_DIR/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "serve did not start: $(tail -n 3 "$OUT_DIR/server.log")"
    sleep 0.1
done

wrk_args=(-t1 "-c$CONNS")
[[ -n $LUA ]] && wrk_args+=(-s "$LUA")
url="http://$HOST:$PORT$URL_PATH"
timeout 30 taskset -c "$WRK_CPU" wrk "${wrk_args[@]}" -d2s "$url" >/dev/null # warm-up
timeout $((SECONDS_PROFILED + 30)) taskset -c "$WRK_CPU" wrk "${wrk_args[@]}" \
    "-d$((SECONDS_PROFILED + 2))s" --latency "$url" >"$OUT_DIR/wrk.txt" &
wrk_pid=$!
sleep 1
perf_args=(-e cpu-clock -F "$FREQ" -p "$SERVER_PID" -o "$OUT_DIR/perf.data")
((CALL_GRAPH)) && perf_args+=(--call-graph "dwarf,32768")
perf record "${perf_args[@]}" -- sleep "$SECONDS_PROFILED" 2>"$OUT_DIR/perf-record.log"
wait "$wrk_pid" || true

{
    echo "# serve under $SCENARIO: $(awk '/^Requests\/sec:/ {print $2}' "$OUT_DIR/wrk.txt") req/s while profiled"
    echo
    echo "## By shared object"
    perf report -i "$OUT_DIR/perf.data" --no-children --sort dso --stdio 2>/dev/null |
        grep -v '^#' | grep -v '^$' | head -n 15
    echo
    echo "## By symbol (top 40)"
    perf report -i "$OUT_DIR/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null |
        grep -v '^#' | grep -v '^$' | head -n 40
    if ((CALL_GRAPH)); then
        echo
        echo "## Inclusive time by symbol (top 60)"
        perf report -i "$OUT_DIR/perf.data" --children --sort symbol --stdio -g none \
            2>/dev/null | grep -v '^#' | grep -v '^$' | head -n 60
    fi
} | tee "$OUT_DIR/report.txt"
echo "(perf data and reports in $OUT_DIR)" >&2
