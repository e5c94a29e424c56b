#!/usr/bin/env bash
# Instructions per request of `serve`, counted by callgrind: a cost that other processes on
# the machine do not disturb, unlike req/s (valgrind runs the threads of a process one at a
# time, so what it counts is the work, not the waits).
#
#   benches/load/instructions.sh                 # hello flask django, each: log on, log off, floor
#   N=500 CONFIGS="log-on floor" benches/load/instructions.sh flask
#   CONFIGS="log-off floor" benches/load/instructions.sh echo
#
# APP is hello (GET / of hello.py), flask (GET /json), django (GET /plain) or echo (POST
# /echo of echo.py with a 65,536-byte body and Content-Length, the load benchmark's echo
# request). For each APP and configuration:
#   log-on   serve in-process (--processes 0), otherwise with its defaults (the access log
#            on; stderr goes to a file)
#   log-off  the same with --log-level warn
#   floor    no server: floor.py --count builds the environ and calls the app N times in
#            plain Python, what a pure-Python server cannot avoid (echo: its wsgi.input
#            is a BytesIO of the 64 KiB body, which the app reads)
# serve runs under `valgrind --tool=callgrind`; client.py sends WARMUP_REQUESTS keep-alive
# requests (the ten headers of floor.py, and echo's body), the counters are zeroed
# (callgrind_control -z), it sends N more, one at a time, and the counters are dumped
# (callgrind_control -d): the instructions of every thread of serve (I/O, Python, log
# writer) over N requests, divided by N. The floor is the difference of two runs,
# WARMUP_REQUESTS+N and WARMUP_REQUESTS requests, divided by N. PYTHONHASHSEED=0 makes both
# repeatable to a few tenths of a percent.
#
# Prints a table of instructions per request and, per run, the top functions by inclusive
# cost into OUT_DIR/APP.CONFIG.top.txt (the callgrind files stay there for
# callgrind_annotate / kcachegrind).
#
# Settings (environment): N=2000, WARMUP_REQUESTS=200, CONFIGS="log-on log-off floor",
# SERVE_ARGS (more options for serve, both configurations), SERVE_BIN (default
# target/release/wsgi-serve, built if missing), VENV (default $VIRTUAL_ENV, else
# benches/load/.venv), PORT=18997, TOP=40, OUT_DIR (default: a new temporary directory).
# Worker processes are not followed: callgrind counts the serve process only, which is why
# serve runs in-process here (a SERVE_ARGS --processes N counts the host's side alone).
set -euo pipefail

LOAD_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_DIR=$(dirname "$LOAD_DIR")
ROOT=$(dirname "$BENCH_DIR")
APPS=$LOAD_DIR/apps
HOST=127.0.0.1 # the only address used
N=${N:-2000}
WARMUP_REQUESTS=${WARMUP_REQUESTS:-200}
CONFIGS=${CONFIGS:-log-on log-off floor}
PORT=${PORT:-18997}
TOP=${TOP:-40}
VENV=${VENV:-${VIRTUAL_ENV:-$LOAD_DIR/.venv}}
SERVE_BIN=${SERVE_BIN:-$ROOT/target/release/wsgi-serve}
OUT_DIR=${OUT_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/wsgi-instructions.XXXXXX")}
read -ra SERVE_EXTRA <<<"${SERVE_ARGS:-}"
APP_LIST=("$@")
((${#APP_LIST[@]})) || APP_LIST=(hello flask django)
mkdir -p "$OUT_DIR"
export PYTHONHASHSEED=0

die() {
    printf '%s\n' "instructions.sh: $*" >&2
    exit 1
}
for n in N WARMUP_REQUESTS PORT TOP; do
    [[ ${!n} =~ ^[0-9]+$ ]] || die "$n must be a whole number, not '${!n}'"
done
((N > 0)) || die "N must be at least 1"
command -v valgrind >/dev/null || die "valgrind is missing (apt-get install -y valgrind)"
[[ -x $VENV/bin/python ]] || die "no virtualenv at $VENV (set VENV, or run run.sh to make one)"
if [[ ! -x $SERVE_BIN ]]; then
    (cd "$ROOT" && cargo build --quiet --release -p wsgi-serve)
fi
PYTHON=$VENV/bin/python

SERVER_PID=""
cleanup() {
    if [[ -n $SERVER_PID ]]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

app_of() { # APP -> "FILE PATH NAME [BODY_BYTES]" (NAME: floor.py's; BODY_BYTES: a POST)
    case $1 in
    hello) echo "hello.py / hello" ;;
    flask) echo "flask_app.py /json flask" ;;
    django) echo "django_app.py /plain django" ;;
    echo) echo "echo.py /echo echo 65536" ;;
    *) die "unknown app '$1' (hello flask django echo)" ;;
    esac
}

summary() { # callgrind file -> its instruction count
    awk '/^summary:/ {print $2}' "$1"
}

# serve under callgrind: sets IR to the instructions of N requests.
measure_serve() {
    local app=$1 config=$2 file=$3 path=$4 body=${5:-} out log i
    local -a args=(--bind "$HOST:$PORT" --venv "$VENV" --processes 0)
    [[ $config == log-off ]] && args+=(--log-level warn)
    args+=(${SERVE_EXTRA[@]+"${SERVE_EXTRA[@]}"} "$APPS/$file")
    out=$OUT_DIR/$app.$config.cg
    log=$OUT_DIR/$app.$config.server.log
    rm -f "$out" "$out".*
    # Emptied here, not by the background job's redirection, which may come after the
    # first look for `listening on`: a reused OUT_DIR would hold the last run's line.
    : >"$OUT_DIR/$app.$config.stdout"
    (cd "$APPS" && exec valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$SERVE_BIN" "${args[@]}") >"$OUT_DIR/$app.$config.stdout" 2>"$log" &
    SERVER_PID=$!
    for ((i = 0; i < 600; i++)); do
        grep -q '^listening on' "$OUT_DIR/$app.$config.stdout" 2>/dev/null && break
        kill -0 "$SERVER_PID" 2>/dev/null || die "serve did not start: $(tail -n 3 "$log")"
        sleep 0.5
    done
    "$PYTHON" "$LOAD_DIR/client.py" "$PORT" "$path" "$WARMUP_REQUESTS" ${body:+"$body"}
    callgrind_control -z "$SERVER_PID" >/dev/null 2>&1
    "$PYTHON" "$LOAD_DIR/client.py" "$PORT" "$path" "$N" ${body:+"$body"}
    callgrind_control -d "$SERVER_PID" >/dev/null 2>&1
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=""
    [[ -f $out.1 ]] || die "no callgrind dump at $out.1"
    IR=$(summary "$out.1")
    # awk reads to the end: an early exit (head) would kill callgrind_annotate with SIGPIPE.
    callgrind_annotate --inclusive=yes "$out.1" 2>/dev/null |
        awk -v top="$TOP" 'f && NF && n++ < top {print} /file:function/ {f = 1}' \
            >"$OUT_DIR/$app.$config.top.txt"
}

# The floor under callgrind: sets IR to the instructions of N requests.
measure_floor() {
    local app=$1 name=$2 a b
    valgrind --tool=callgrind --callgrind-out-file="$OUT_DIR/$app.floor.short.cg" \
        "$PYTHON" "$BENCH_DIR/floor.py" --count "$WARMUP_REQUESTS" "$name" 2>/dev/null
    valgrind --tool=callgrind --callgrind-out-file="$OUT_DIR/$app.floor.cg" \
        "$PYTHON" "$BENCH_DIR/floor.py" --count "$((WARMUP_REQUESTS + N))" "$name" 2>/dev/null
    a=$(summary "$OUT_DIR/$app.floor.short.cg")
    b=$(summary "$OUT_DIR/$app.floor.cg")
    IR=$((b - a))
}

{
    echo "# Instructions per request (callgrind), N=$N after $WARMUP_REQUESTS warm-up requests"
    echo "# serve: $SERVE_BIN ${SERVE_ARGS:-}; Python: $("$PYTHON" -c 'import sys; print(sys.version.split()[0])')"
    printf '%-8s %-8s %14s %12s\n' app config instructions "per request"
} | tee "$OUT_DIR/table.txt"
for app in "${APP_LIST[@]}"; do
    read -r file path name body <<<"$(app_of "$app")"
    for config in $CONFIGS; do
        case $config in
        log-on | log-off) measure_serve "$app" "$config" "$file" "$path" "$body" ;;
        floor) measure_floor "$app" "$name" ;;
        *) die "unknown configuration '$config' (log-on log-off floor)" ;;
        esac
        printf '%-8s %-8s %14d %12d\n' "$app" "$config" "$IR" "$((IR / N))" | tee -a "$OUT_DIR/table.txt"
    done
done
echo "(callgrind files and top functions in $OUT_DIR)" >&2
