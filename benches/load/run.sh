#!/usr/bin/env bash
# The load benchmark: wsgi-rs's `serve` against peer WSGI servers and a no-Python axum
# ceiling, one process per server, with wrk, on 127.0.0.1 only.
#
#   benches/load/run.sh                      # everything, DURATION=8 s per run
#   DURATION=5 SERVERS="serve-axum granian" SCENARIOS="hello-c64" benches/load/run.sh
#
# For each server x scenario: start the server pinned to CPU $SERVER_CPU (taskset), wait
# until its port accepts, check one response, warm up with wrk for $WARMUP s, then
# `wrk -t1 -cN -d$DURATION --latency` pinned to CPU $WRK_CPU (with PIN=0 neither is pinned:
# both run on any CPU, as users run servers), read the server's RSS
# (VmRSS of its processes) and CPU time, and stop it by PID. The Markdown table
# (req/s, its ratio to Granian in the same run, p50, p99, errors, RSS, CPU, CPU µs per
# request) goes to stdout and to benches/results/<UTC date>.md, followed, when worker-mode
# serve rows ran, by their ratios to in-process serve (req/s, CPU µs/req) and to Granian
# with as many workers, and the worker-mode targets of issue 21 in those ratios; wrk's and
# the servers' own output goes to $RAW_DIR.
#
# The server's CPU time counts every process the server runs, workers replaced during the
# run and workers forked by any of its threads included. With cgroup v2 (the default when
# it is mounted and writable, as for root) each server start runs in a cgroup of its own,
# entered before the server is exec'd; the figure is the difference of that cgroup's
# cpu.stat usage_usec across the measured run. Without it: utime+stime+cutime+cstime from
# /proc/PID/stat of the server and of its live descendants (cutime/cstime: the children it
# reaped). "CPU µs/req" is that difference over the requests wrk completed in the run.
#
# Settings (environment):
#   DURATION=8 WARMUP=2         seconds of each measured run and of its warm-up
#   SERVERS="..."               any of: serve-axum serve-axum-warn serve-actix serve-p1
#                               serve-p2 axum-ceiling granian granian-w2 gunicorn gunicorn-w2
#                               uwsgi bjoern waitress (default: these), or serve-procs, or
#                               serve-pN granian-wN gunicorn-wN for any N. serve-* run serve
#                               with its defaults, the access log on, except serve-axum-warn
#                               (--log-level warn: no access log); serve-axum, serve-axum-warn
#                               and serve-actix run in-process (--processes 0; serve's default
#                               is one worker process, serve-p1). Worker mode: serve-pN is
#                               --server axum --processes N, OUR_THREADS shared out (p1: 1 x 8,
#                               p2: 2 x 4); serve-procs is --processes OUR_PROCESSES --threads
#                               PROC_THREADS. granian-wN: --workers N, 4 blocking threads each
#                               (as granian's 1); gunicorn-wN: --workers N, its 8 threads
#                               shared out (2 x 4). serve's axum I/O runs on one tokio
#                               thread per CPU it may use: 1 pinned, all of them unpinned.
#   SCENARIOS="..."             any of: hello-c1 hello-c64 flask-c64 django-c64 stream-c64
#                               echo-c64 sleepy-c256 (default: all)
#   OUR_THREADS=8               serve's --threads (sleepy-c256: SLEEPY_THREADS)
#   OUR_PROCESSES=2 PROC_THREADS=4  serve-procs: --processes and --threads per process
#                               (sleepy-c256: SLEEPY_THREADS shared out between the processes)
#   SLEEPY_THREADS=64           every threaded server's threads for sleepy-c256
#   PIN=1                       1: pinned (the default, comparable with earlier figures);
#                               0: unpinned, neither the server nor wrk is pinned, and the
#                               disturbance check takes the whole machine's busy time less
#                               the server's and wrk's (the report says which mode ran)
#   SERVER_CPU=1 WRK_CPU=0      the CPUs the server and wrk are pinned to (PIN=1)
#   PORT_BASE=18080             ports used: PORT_BASE+1, +2, ... (one per server start)
#   START_TIMEOUT=30            seconds a server may take to accept connections
#   QUIET_MAX=15 QUIET_TRIES=20 before each run, wait (1 s at a time, at most QUIET_TRIES
#                               times) until other processes use < QUIET_MAX% of the CPUs
#   OTHER_MAX=5 RETRIES=2       a run during which other processes took > OTHER_MAX% of the
#                               server's or wrk's CPU (PIN=0: > OTHER_MAX% of one CPU on the
#                               whole machine) is done again (a fresh server), up to RETRIES
#                               more times; the least disturbed run is reported (marked †
#                               if still over OTHER_MAX)
#   CPU_ACCT=auto               the server's CPU time from: cgroup (die if cgroup v2 cannot be
#                               used), proc (/proc/PID/stat), auto (cgroup if possible)
#   SERVE_REV=<commit>          build serve from that commit (a clean copy, cached in
#                               $BUILD_CACHE, default $TMPDIR/wsgi-load-build) instead of
#                               from the work tree
#   SERVE_BIN, AXUM_BIN         prebuilt binaries to use instead of building them
#   VENV=benches/load/.venv     the peers' virtualenv (made and filled if needed)
#   RAW_DIR                     where raw outputs go (default: a new temporary directory)
#   REPORT_FROM="DIR ..."       measure nothing: make the report from earlier runs' RAW_DIRs,
#                               taking each scenario whole (so that its ratios to Granian stay
#                               within one run) from the run in which the fewest servers were
#                               disturbed by other processes
#   OUT                         the report file (default: benches/results/<UTC date>.md)
set -euo pipefail

LOAD_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_DIR=$(dirname "$LOAD_DIR")
ROOT=$(dirname "$BENCH_DIR")
APPS=$LOAD_DIR/apps
HOST=127.0.0.1 # the only address this script ever sends traffic to

DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
ALL_SERVERS="serve-axum serve-axum-warn serve-actix serve-p1 serve-p2 axum-ceiling granian granian-w2 gunicorn gunicorn-w2 uwsgi bjoern waitress"
ALL_SCENARIOS="hello-c1 hello-c64 flask-c64 django-c64 stream-c64 echo-c64 sleepy-c256"
SERVERS=${SERVERS:-$ALL_SERVERS}
SCENARIOS=${SCENARIOS:-$ALL_SCENARIOS}
OUR_THREADS=${OUR_THREADS:-8}
OUR_PROCESSES=${OUR_PROCESSES:-2}
PROC_THREADS=${PROC_THREADS:-4}
SLEEPY_THREADS=${SLEEPY_THREADS:-64}
SERVER_CPU=${SERVER_CPU:-1}
WRK_CPU=${WRK_CPU:-0}
PORT=${PORT_BASE:-18080}
START_TIMEOUT=${START_TIMEOUT:-30}
QUIET_MAX=${QUIET_MAX:-15}
QUIET_TRIES=${QUIET_TRIES:-20}
OTHER_MAX=${OTHER_MAX:-5}
RETRIES=${RETRIES:-2}
CPU_ACCT=${CPU_ACCT:-auto}
PIN=${PIN:-1}
NCPU=$(grep -c '^cpu[0-9]' /proc/stat)
VENV=${VENV:-$LOAD_DIR/.venv}
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
OUT=${OUT:-$BENCH_DIR/results/$(date -u +%Y-%m-%d).md}
RAW_DIR=${RAW_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/wsgi-load.XXXXXX")}
TSV=$RAW_DIR/results.tsv

CURRENT_PID="" # the server now running, if any
SECS=0
SERVE_DESC=""

log() { printf '%s\n' "==> $*" >&2; }
die() {
    printf '%s\n' "run.sh: $*" >&2
    exit 1
}

for n in DURATION WARMUP OUR_THREADS OUR_PROCESSES PROC_THREADS SLEEPY_THREADS SERVER_CPU \
    WRK_CPU PORT START_TIMEOUT QUIET_MAX QUIET_TRIES OTHER_MAX RETRIES; do
    [[ ${!n} =~ ^[0-9]+$ ]] || die "$n must be a whole number, not '${!n}'"
done
[[ $PIN =~ ^[01]$ ]] || die "PIN must be 1 (pinned) or 0 (unpinned), not '$PIN'"
SERVER_PIN=(taskset -c "$SERVER_CPU") WRK_PIN=(taskset -c "$WRK_CPU")
if ((!PIN)); then SERVER_PIN=() WRK_PIN=(); fi
[[ $CPU_ACCT =~ ^(auto|cgroup|proc)$ ]] || die "CPU_ACCT must be auto, cgroup or proc, not '$CPU_ACCT'"
known_server() { # NAME -> 0 if this script can run that server
    [[ " $ALL_SERVERS serve-procs " == *" $1 "* || $1 =~ ^(serve-p|granian-w|gunicorn-w)[1-9][0-9]*$ ]]
}
for s in $SERVERS; do
    known_server "$s" || die "unknown server '$s' (known: $ALL_SERVERS serve-procs, and serve-pN granian-wN gunicorn-wN for any N)"
done
for s in $SCENARIOS; do
    [[ " $ALL_SCENARIOS " == *" $s "* ]] || die "unknown scenario '$s' (known: $ALL_SCENARIOS)"
done

# ---------------------------------------------------------------------------------------
# Processes: a server and all its descendants, stopped by PID only.

descendants() { # PID -> the PIDs of its children, grandchildren, ...
    local child
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null || true); do
        echo "$child"
        descendants "$child"
    done
}

tree() { # PID -> it and its descendants
    echo "$1"
    descendants "$1"
}

alive() { # PID -> running (a zombie, exited but not yet reaped, is not)
    local state
    state=$(awk '{sub(/.*\) /, ""); print $1}' "/proc/$1/stat" 2>/dev/null || true)
    [[ -n $state && $state != Z ]]
}

stop_server() { # PID: SIGTERM, up to 10 s, then SIGKILL for its processes (`server_pids`)
    local pid=$1 pids i
    pids=$(server_pids "$pid" | tr '\n' ' ')
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    # shellcheck disable=SC2086 # a list of PIDs
    kill -KILL $pids 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    drop_cgroup
    CURRENT_PID=""
}

cleanup() {
    if [[ -n $CURRENT_PID ]]; then
        stop_server "$CURRENT_PID"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rss_kib() { # PID -> VmRSS of the server's processes (`server_pids`), in KiB
    local total=0 p kb
    for p in $(server_pids "$1"); do
        kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
        total=$((total + ${kb:-0}))
    done
    echo "$total"
}

# CPU time of a server: every process it ever ran, during the measured run. Two sources:
#  - cgroup (CPU_ACCT=cgroup, or auto when cgroup v2 is mounted and we may make a cgroup
#    in ours): each server start gets a cgroup of its own, entered before the server is
#    exec'd, so every process it forks, from any thread, however often workers are replaced,
#    and even one that outlives its parent, is in it; usage_usec of its cpu.stat is their
#    CPU time (user+system, the scheduler's exact figure), the dead ones' included.
#  - proc (the fallback): utime+stime+cutime+cstime of the server and of each live
#    descendant (/proc/PID/stat). cutime/cstime hold the children a process has reaped
#    (with their own reaped children), so workers that exited and were waited for still
#    count; only a process orphaned to init (a double fork) would be lost.
CG_BASE=""    # where each server start's cgroup is made (cgroup mode)
CG=""         # the cgroup of the server now running, if any
CPU_METHOD="" # what the report says about the source
TICK_US=$((1000000 / $(getconf CLK_TCK)))

setup_cpu_acct() {
    local mnt path probe
    if [[ $CPU_ACCT != proc ]]; then
        mnt=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/self/mounts)
        path=$(awk -F: '$1 == "0" {print $3; exit}' /proc/self/cgroup)
        probe=$mnt${path%/}/wsgi-load-$$.probe
        if [[ -n $mnt && -n $path ]] && mkdir "$probe" 2>/dev/null; then
            if [[ -r $probe/cpu.stat ]] && grep -q '^usage_usec ' "$probe/cpu.stat"; then
                CG_BASE=$mnt${path%/}
            fi
            rmdir "$probe"
        fi
        [[ -n $CG_BASE || $CPU_ACCT == auto ]] ||
            die "CPU_ACCT=cgroup: cannot make a cgroup v2 with cpu.stat under ${mnt:-(no cgroup2 mount)}${path}"
    fi
    if [[ -n $CG_BASE ]]; then
        CPU_METHOD="cgroup v2 cpu.stat usage_usec of a cgroup per server start (under $CG_BASE)"
    else
        CPU_METHOD="/proc/PID/stat utime+stime+cutime+cstime of the server and its live descendants"
    fi
}

new_cgroup() { # NAME -> sets CG: a fresh cgroup for the next server start (cgroup mode)
    CG=""
    [[ -n $CG_BASE ]] || return 0
    CG=$CG_BASE/wsgi-load-$$.$1
    mkdir "$CG" || die "cannot make the cgroup $CG"
}

drop_cgroup() { # kill what is left in the server's cgroup (our processes only), remove it
    local i pids
    [[ -n $CG && -d $CG ]] || return 0
    for ((i = 0; i < 50; i++)); do
        pids=$(tr '\n' ' ' <"$CG/cgroup.procs" 2>/dev/null || true)
        [[ -z ${pids// /} ]] && break
        # shellcheck disable=SC2086 # a list of PIDs
        kill -KILL $pids 2>/dev/null || true
        sleep 0.1
    done
    rmdir "$CG" 2>/dev/null || log "could not remove the cgroup $CG"
    CG=""
}

server_pids() { # PID -> the server's processes: its cgroup's, or it and its descendants
    if [[ -n $CG && -r $CG/cgroup.procs ]]; then
        cat "$CG/cgroup.procs"
    else
        tree "$1"
    fi
}

server_cpu_us() { # PID -> CPU µs (user+system) of the server's processes, dead ones included
    local total=0 p stat rest
    local -a f
    if [[ -n $CG ]]; then
        awk '$1 == "usage_usec" {print $2}' "$CG/cpu.stat"
        return
    fi
    for p in $(tree "$1"); do
        stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        rest=${stat##*) }
        read -ra f <<<"$rest"
        total=$((total + f[11] + f[12] + f[13] + f[14]))
    done
    echo $((total * TICK_US))
}

cpu_busy() { # CPU (empty: all) -> "busy total" ticks of it (busy: user+nice+system, no irq)
    awk -v cpu="cpu$1" '$1 == cpu {print $2 + $3 + $4, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat
}

all_busy() { cpu_busy ""; } # -> "busy total" ticks of all CPUs

wait_quiet() { # PID of the (idle) server: wait until the rest of the machine is quiet
    local pid=$1 i b0 t0 b1 t1 s0 s1 busy
    for ((i = 0; i < QUIET_TRIES; i++)); do
        read -r b0 t0 < <(all_busy)
        s0=$(server_cpu_us "$pid")
        sleep 1
        read -r b1 t1 < <(all_busy)
        s1=$(server_cpu_us "$pid")
        busy=$((((b1 - b0) * TICK_US - (s1 - s0)) * 100 / ((t1 - t0 > 0 ? t1 - t0 : 1) * TICK_US)))
        if ((busy < QUIET_MAX)); then
            return 0
        fi
        log "other processes use ${busy}% of the CPUs; waiting"
    done
    log "still busy after ${QUIET_TRIES} s; measuring anyway (see the other-CPU column)"
}

children_secs() { # sets SECS: CPU seconds (user+system) of this shell's children reaped so far
    # `times` must run in this shell, not in a $(...) subshell, whose count starts at zero.
    times >"$RAW_DIR/times"
    SECS=$(awk 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { split($i, p, "m"); t += p[1] * 60 + p[2] }
        printf "%.3f", t
    }' "$RAW_DIR/times")
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# ---------------------------------------------------------------------------------------
# Set-up: the peers' venv, wrk, and our two binaries.

setup_venv() {
    local stamp=$VENV/.requirements.sha256 want
    want=$(sha256sum "$LOAD_DIR/requirements.txt" | cut -d' ' -f1)
    if [[ -x $VENV/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
        return
    fi
    log "creating $VENV with the pinned peers (requirements.txt)"
    [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$LOAD_DIR/requirements.txt"
    echo "$want" >"$stamp"
}

setup_wrk() {
    command -v wrk >/dev/null && return
    log "installing wrk"
    if ! apt-get install -y -qq wrk >/dev/null 2>&1; then
        apt-get update -qq
        apt-get install -y -qq wrk >/dev/null
    fi
    command -v wrk >/dev/null || die "wrk is not installed and could not be installed"
}

setup_binaries() {
    local target=${CARGO_TARGET_DIR:-$ROOT/target} sha dir build
    if [[ -n ${SERVE_BIN:-} ]]; then
        SERVE_DESC="prebuilt $SERVE_BIN"
    elif [[ -n ${SERVE_REV:-} ]]; then
        # A clean build of one commit, cached per commit: for A/B runs, and for measuring
        # while the work tree is in flux.
        sha=$(git -C "$ROOT" rev-parse --verify --quiet "$SERVE_REV^{commit}") ||
            die "SERVE_REV=$SERVE_REV is not a commit"
        dir=${BUILD_CACHE:-${TMPDIR:-/tmp}/wsgi-load-build}/$sha
        if git -C "$ROOT" cat-file -e "$sha:examples/wsgi-serve/Cargo.toml" 2>/dev/null; then
            build=(-p wsgi-serve)
            SERVE_BIN=$dir/target/release/wsgi-serve
        elif git -C "$ROOT" cat-file -e "$sha:examples/serve.rs" 2>/dev/null; then
            # Before `serve` became a binary of the examples package, it was an example.
            build=(-p examples --example serve)
            SERVE_BIN=$dir/target/release/examples/serve
        else
            # Then a binary of the examples package, before it had a package of its own.
            build=(-p examples --bin serve)
            SERVE_BIN=$dir/target/release/serve
        fi
        if [[ ! -x $SERVE_BIN ]]; then
            log "building serve at $SERVE_REV (${sha:0:10}) in $dir"
            rm -rf "$dir/src"
            mkdir -p "$dir/src"
            git -C "$ROOT" archive "$sha" | tar -x -C "$dir/src"
            (cd "$dir/src" && CARGO_TARGET_DIR=$dir/target cargo build --quiet --release \
                "${build[@]}")
        fi
        SERVE_DESC="commit ${sha:0:10} (SERVE_REV=$SERVE_REV)"
    else
        log "cargo build --release -p wsgi-serve"
        (cd "$ROOT" && cargo build --quiet --release -p wsgi-serve)
        SERVE_BIN=$target/release/wsgi-serve
        sha=$(git -C "$ROOT" rev-parse --short=10 HEAD 2>/dev/null || echo unknown)
        if [[ -n $(git -C "$ROOT" status --porcelain --untracked-files=no -- \
            ':!benches' 2>/dev/null) ]]; then
            SERVE_DESC="the work tree at $sha, with uncommitted changes"
        else
            SERVE_DESC="commit $sha"
        fi
    fi
    if [[ -z ${AXUM_BIN:-} ]]; then
        log "cargo build --release --bin axum_hello"
        (cd "$ROOT" && cargo build --quiet --release -p benches --bin axum_hello)
        AXUM_BIN=$target/release/axum_hello
    fi
    [[ -x $SERVE_BIN ]] || die "no serve binary at $SERVE_BIN"
    [[ -x $AXUM_BIN ]] || die "no axum_hello binary at $AXUM_BIN"
}

# ---------------------------------------------------------------------------------------
# Scenarios and servers.

# Sets MOD, URL_PATH, CONNS, LUA, EXPECT_BODY (exact body, or empty) and EXPECT_LEN.
scenario() {
    LUA="" EXPECT_BODY="" EXPECT_LEN=""
    case $1 in
    hello-c1) MOD=hello URL_PATH=/ CONNS=1 EXPECT_BODY="Hello, World!" ;;
    hello-c64) MOD=hello URL_PATH=/ CONNS=64 EXPECT_BODY="Hello, World!" ;;
    flask-c64) MOD=flask_app URL_PATH=/json CONNS=64 ;;
    django-c64) MOD=django_app URL_PATH=/plain CONNS=64 EXPECT_BODY="Hello, World!" ;;
    stream-c64) MOD=stream URL_PATH=/stream CONNS=64 EXPECT_LEN=1024000 ;;
    echo-c64) MOD=echo URL_PATH=/echo CONNS=64 LUA=$LOAD_DIR/post64k.lua EXPECT_BODY=65536 ;;
    sleepy-c256) MOD=sleepy URL_PATH=/ CONNS=256 EXPECT_BODY="Hello, World!" ;;
    esac
}

label() {
    case $1 in
    serve-axum) echo "serve --server axum --processes 0 (wsgi-rs, in-process), access log on" ;;
    serve-axum-warn) echo "serve --server axum --processes 0 --log-level warn (no access log)" ;;
    serve-actix) echo "serve --server actix --processes 0 (wsgi-rs, in-process), access log on" ;;
    serve-procs) echo "serve --server axum --processes $OUR_PROCESSES (worker mode), access log on" ;;
    serve-p1) echo "serve --server axum --processes 1 (worker mode, the default), access log on" ;;
    serve-p[0-9]*) echo "serve --server axum --processes ${1#serve-p} (worker mode), access log on" ;;
    axum-ceiling) echo "axum hello, no Python (ceiling)" ;;
    granian) echo "granian wsgi, 1 worker" ;;
    granian-w*) echo "granian wsgi, ${1#granian-w} workers" ;;
    gunicorn) echo "gunicorn gthread, 1 worker" ;;
    gunicorn-w*) echo "gunicorn gthread, ${1#gunicorn-w} workers" ;;
    uwsgi) echo "uWSGI --http-socket, 1 process" ;;
    bjoern) echo "bjoern" ;;
    waitress) echo "waitress" ;;
    esac
}

shared_out() { # THREADS PROCESSES -> threads per process, rounded up
    echo $((($1 + $2 - 1) / $2))
}

# Sets CMD (an array) and THREADS_USED for server $1 serving app $MOD; fails if the server
# does not run this scenario.
#
# Servers with worker processes (serve-pN, granian-wN, gunicorn-wN): N processes with
# threads per process; THREADS_USED reads "N x T". serve and gunicorn share their thread
# count out (OUR_THREADS=8 -> serve-p1 8, serve-p2 and gunicorn-w2 2 x 4), so that a row
# differs from the in-process one in where Python runs, not in how many threads it has;
# Granian keeps its tuned 4 blocking threads per worker (2 x 4 as well). In sleepy-c256
# every one of them shares SLEEPY_THREADS out between its processes.
server_cmd() {
    local sleepy=0 py_lib workers
    local -a opts=()
    [[ $MOD == sleepy ]] && sleepy=1
    case $1 in
    serve-*)
        # serve as users run it: its defaults (the access log on, to stderr, which goes to
        # a file here), the options a benchmark must set, and one change per extra row.
        THREADS_USED=$OUR_THREADS
        ((sleepy)) && THREADS_USED=$SLEEPY_THREADS
        case $1 in
        serve-axum) opts=(--server axum --processes 0) ;;
        serve-axum-warn) opts=(--server axum --processes 0 --log-level warn) ;;
        serve-actix) opts=(--server actix --processes 0) ;;
        serve-procs)
            THREADS_USED=$PROC_THREADS
            ((sleepy)) && THREADS_USED=$(shared_out "$SLEEPY_THREADS" "$OUR_PROCESSES")
            opts=(--server axum --processes "$OUR_PROCESSES")
            ;;
        serve-p[0-9]*)
            workers=${1#serve-p}
            THREADS_USED=$(shared_out "$THREADS_USED" "$workers")
            opts=(--server axum --processes "$workers")
            ;;
        esac
        opts+=(--threads "$THREADS_USED")
        case $1 in
        serve-procs) THREADS_USED="$OUR_PROCESSES x $THREADS_USED" ;;
        serve-p[0-9]*) THREADS_USED="$workers x $THREADS_USED" ;;
        esac
        # The same libpython as the peers' interpreter, whatever the loader would pick.
        py_lib=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
        CMD=(env "LD_LIBRARY_PATH=$py_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$SERVE_BIN"
            --bind "$HOST:$PORT" "${opts[@]}" --venv "$VENV" "$APPS/$MOD.py")
        ;;
    axum-ceiling)
        [[ $MOD == hello ]] || return 1
        THREADS_USED=0
        CMD=("$AXUM_BIN" --bind "$HOST:$PORT")
        ;;
    granian | granian-w*)
        workers=1
        [[ $1 == granian-w* ]] && workers=${1#granian-w}
        THREADS_USED=4 # per worker
        ((sleepy)) && THREADS_USED=$(shared_out "$SLEEPY_THREADS" "$workers")
        CMD=("$VENV/bin/granian" --interface wsgi --workers "$workers"
            --blocking-threads "$THREADS_USED" --host "$HOST" --port "$PORT" "$MOD:application")
        if ((workers > 1)); then THREADS_USED="$workers x $THREADS_USED"; fi
        ;;
    gunicorn | gunicorn-w*)
        workers=1
        [[ $1 == gunicorn-w* ]] && workers=${1#gunicorn-w}
        THREADS_USED=$(shared_out 8 "$workers")
        ((sleepy)) && THREADS_USED=$(shared_out "$SLEEPY_THREADS" "$workers")
        CMD=("$VENV/bin/gunicorn" --workers "$workers" --worker-class gthread
            --threads "$THREADS_USED" --bind "$HOST:$PORT" "$MOD:application")
        if ((workers > 1)); then THREADS_USED="$workers x $THREADS_USED"; fi
        ;;
    uwsgi)
        THREADS_USED=8
        ((sleepy)) && THREADS_USED=$SLEEPY_THREADS
        CMD=("$VENV/bin/uwsgi" --http-socket "$HOST:$PORT" --wsgi-file "$MOD.py"
            --callable application --processes 1 --threads "$THREADS_USED" --disable-logging
            --die-on-term --add-header=Connection:close)
        ;;
    bjoern)
        THREADS_USED=1
        CMD=("$VENV/bin/python" run_bjoern.py "$MOD" "$PORT")
        ;;
    waitress)
        THREADS_USED=8
        ((sleepy)) && THREADS_USED=$SLEEPY_THREADS
        CMD=("$VENV/bin/waitress-serve" "--host=$HOST" "--port=$PORT" "--threads=$THREADS_USED"
            "$MOD:application")
        ;;
    esac
}

check_response() { # URL -> 0 if the app answers as expected
    local url=$1 body=$RAW_DIR/check.body code
    local -a curl_args=(--silent --max-time 10 --output "$body" --write-out '%{http_code}')
    if [[ -n $LUA ]]; then
        head -c 65536 /dev/zero | tr '\0' x >"$RAW_DIR/post.bin"
        curl_args+=(--data-binary "@$RAW_DIR/post.bin" -H 'Content-Type: application/octet-stream')
    fi
    code=$(curl "${curl_args[@]}" "$url" || true)
    [[ $code == 200 ]] || return 1
    if [[ -n $EXPECT_BODY ]]; then
        [[ $(cat "$body") == "$EXPECT_BODY" ]] || return 1
    fi
    if [[ -n $EXPECT_LEN ]]; then
        [[ $(stat -c %s "$body") == "$EXPECT_LEN" ]] || return 1
    fi
    [[ -s $body ]]
}

wrk_run() { # SECONDS URL [--latency] -> wrk's output on stdout
    local secs=$1 url=$2
    shift 2
    local -a args=(-t1 "-c$CONNS" "-d${secs}s" "$@")
    [[ -n $LUA ]] && args+=(-s "$LUA")
    timeout --kill-after=5 $((secs + 30)) "${WRK_PIN[@]}" wrk "${args[@]}" "$url"
}

# Latency "330.00us" / "1.07ms" / "2.01s" -> milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /m$/) n *= 60000;
        else if (v ~ /s$/) n *= 1000
        printf (n >= 100 ? "%.0f" : "%.3g"), n
    }'
}

record() { # server scenario rps p50 p99 errors rss cpu_server cpu_wrk other threads note
    # other_split cpu_us_per_request (the report reads these by position; other = the
    # larger of other_split; runs from before cpu_us_per_request have 13 fields)
    local IFS=$'\t'
    echo "$*" >>"$TSV"
}

# One start-check-warm-up-measure-stop of server $1 in scenario $2 (already set up by
# `scenario`), attempt $3. Sets ROW (the fields of `record`) and OTHER (the other-CPU %);
# fails, with ROW saying why, if the server cannot be measured.
attempt() {
    local server=$1 scen=$2 try=$3 name url out logf pid t0
    PORT=$((PORT + 1))
    while port_open "$PORT"; do PORT=$((PORT + 1)); done
    server_cmd "$server"
    name="$server.$scen.$try"
    url="http://$HOST:$PORT$URL_PATH"
    logf=$RAW_DIR/$name.server.log
    OTHER=0
    log "$server / $scen: ${CMD[*]}"
    new_cgroup "$name"
    (
        # Into the server's cgroup first, so that everything it starts is in it too.
        if [[ -n $CG ]]; then echo "$BASHPID" >"$CG/cgroup.procs"; fi
        cd "$APPS" && exec "${SERVER_PIN[@]}" "${CMD[@]}"
    ) >"$logf" 2>&1 &
    pid=$!
    CURRENT_PID=$pid
    t0=$SECONDS
    until port_open "$PORT"; do
        if ! alive "$pid" || ((SECONDS - t0 > START_TIMEOUT)); then
            log "$server did not start; skipped (its output: $logf)"
            tail -n 5 "$logf" >&2 || true
            stop_server "$pid"
            ROW=("$server" "$scen" "" "" "" "" "" "" "" "" "$THREADS_USED" "did not start" "" "")
            return 1
        fi
        sleep 0.1
    done
    if ! check_response "$url"; then
        log "$server answered $url wrongly; skipped"
        stop_server "$pid"
        ROW=("$server" "$scen" "" "" "" "" "" "" "" "" "$THREADS_USED" "wrong response" "" "")
        return 1
    fi
    wait_quiet "$pid"
    wrk_run "$WARMUP" "$url" >"$RAW_DIR/$name.warmup" 2>&1 || true

    # Busy time: of the server's CPU and of wrk's (pinned), or of the whole machine (PIN=0).
    local s0 s1 cb0 ct0 cb1 ct1 wb0=0 wt0=0 wb1=0 wt1=1 k0 k1 rss busy_cpu=$SERVER_CPU
    ((PIN)) || busy_cpu=""
    s0=$(server_cpu_us "$pid")
    read -r cb0 ct0 < <(cpu_busy "$busy_cpu")
    ((PIN)) && read -r wb0 wt0 < <(cpu_busy "$WRK_CPU")
    out=$RAW_DIR/$name.wrk
    children_secs
    k0=$SECS
    if ! wrk_run "$DURATION" "$url" --latency >"$out" 2>&1; then
        log "wrk failed or timed out against $server; see $out"
    fi
    children_secs
    k1=$SECS
    s1=$(server_cpu_us "$pid")
    read -r cb1 ct1 < <(cpu_busy "$busy_cpu")
    ((PIN)) && read -r wb1 wt1 < <(cpu_busy "$WRK_CPU")
    rss=$(rss_kib "$pid")
    alive "$pid" || log "$server died during the run"
    stop_server "$pid"

    # CPU, in % of one CPU over the run (/proc/stat counts ticks of 1/CLK_TCK s): the
    # server's own time (all its processes and threads, see server_cpu_us); wrk's own; and
    # what other processes took. Pinned: on each of the two CPUs (that CPU's busy time less
    # the server's, or wrk's). Unpinned: on the whole machine (the busy time of all CPUs
    # less the server's and wrk's), still in % of one CPU.
    local span wspan=$((wt1 - wt0 > 0 ? wt1 - wt0 : 1)) split
    local cpu_server cpu_wrk other_s other_w=0
    span=$((ct1 - ct0 > 0 ? ct1 - ct0 : 1))
    ((PIN)) || span=$(((span + NCPU - 1) / NCPU)) # all CPUs' ticks -> one CPU's: the wall time
    ((PIN)) || wspan=$span
    cpu_server=$(((s1 - s0) * 100 / (span * TICK_US)))
    cpu_wrk=$(awk -v a="$k0" -v b="$k1" -v us="$((wspan * TICK_US))" 'BEGIN {printf "%d", (b - a) * 1e8 / us}')
    if ((PIN)); then
        other_s=$(((cb1 - cb0) * 100 / span - cpu_server))
        other_w=$(((wb1 - wb0) * 100 / wspan - cpu_wrk))
    else
        other_s=$(((cb1 - cb0) * 100 / span - cpu_server - cpu_wrk))
    fi
    ((other_s < 0)) && other_s=0
    ((other_w < 0)) && other_w=0
    OTHER=$((other_s > other_w ? other_s : other_w))
    split=$other_s/$other_w
    ((PIN)) || split=$other_s

    local rps p50 p99 errors reqs us_req=""
    rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
    # The server's CPU time over the measured run per request completed in it.
    reqs=$(awk '$2 == "requests" && $3 == "in" {print $1}' "$out")
    if [[ ${reqs:-0} -gt 0 ]]; then
        us_req=$(awk -v us="$((s1 - s0))" -v n="$reqs" 'BEGIN {printf "%.1f", us / n}')
    fi
    p50=$(awk '$1 == "50%" {print $2}' "$out")
    p99=$(awk '$1 == "99%" {print $2}' "$out")
    errors=$(awk '
        /Socket errors:/ { gsub(",", ""); n += $4 + $6 + $8 + $10 }
        /Non-2xx or 3xx responses:/ { n += $5 }
        END { print n + 0 }' "$out")
    [[ -n $p50 ]] && p50=$(to_ms "$p50")
    [[ -n $p99 ]] && p99=$(to_ms "$p99")
    ROW=("$server" "$scen" "${rps:-}" "${p50:-}" "${p99:-}" "$errors" "$rss" "$cpu_server"
        "$cpu_wrk" "$OTHER" "$THREADS_USED" "" "$split" "$us_req")
    log "$server / $scen: ${rps:-?} req/s, p50 ${p50:-?} ms, p99 ${p99:-?} ms, errors $errors, RSS $rss KiB, CPU: server ${cpu_server}% (${us_req:-?} µs/req) wrk ${cpu_wrk}% others ${split}%"
}

# Measures server $1 in scenario $2 and records the result. A run in which other processes
# took more than OTHER_MAX% of the server's CPU is repeated, up to RETRIES more times, and
# the least disturbed run is kept.
run_one() {
    local server=$1 scen=$2 try best_other=0
    local -a best=()
    scenario "$scen"
    server_cmd "$server" || return 0
    for ((try = 1; try <= RETRIES + 1; try++)); do
        if ! attempt "$server" "$scen" "$try"; then
            record "${ROW[@]}"
            return 0
        fi
        # (Unpinned, OTHER is of the whole machine: it may exceed 100%.)
        if ((${#best[@]} == 0 || OTHER < best_other)); then
            best=("${ROW[@]}")
            best_other=$OTHER
        fi
        ((best_other <= OTHER_MAX)) && break
        ((try <= RETRIES)) && log "disturbed run (other processes: ${OTHER}% of a CPU); again"
    done
    record "${best[@]}"
}

# ---------------------------------------------------------------------------------------
# The report.

# The facts of this run, for the report (also kept in $RAW_DIR/meta.md).
describe_run() {
    local cpu_model
    cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
    echo "- Run $STAMP; machine: $(nproc) CPUs ($cpu_model), $(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), Linux $(uname -r)"
    echo "- Python $("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])'), $(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2)"
    echo "- serve: $SERVE_DESC"
    echo "- Server CPU time: $CPU_METHOD"
    echo "- Settings: DURATION=$DURATION WARMUP=$WARMUP OUR_THREADS=$OUR_THREADS OUR_PROCESSES=$OUR_PROCESSES PROC_THREADS=$PROC_THREADS SLEEPY_THREADS=$SLEEPY_THREADS RETRIES=$RETRIES OTHER_MAX=$OTHER_MAX PIN=$PIN (\`wrk -t1 -cN -d${DURATION}s --latency\`)"
    if ((PIN)); then
        echo "- Mode: **pinned**: the server (all its processes) on CPU $SERVER_CPU, wrk on CPU $WRK_CPU (\`taskset\`); *others* = other processes' share of the server's CPU / of wrk's CPU"
    else
        echo "- Mode: **unpinned** (PIN=0): the server and wrk free to run on any of the $NCPU CPUs, as users run servers; *others* = the busy time of all CPUs less the server's and wrk's, in % of one CPU"
    fi
}

# REPORT_FROM: fills $TSV with each scenario's rows from the least disturbed earlier run.
merge_runs() {
    local scen dir best score best_score
    : >"$TSV"
    : >"$RAW_DIR/sources"
    for scen in $SCENARIOS; do
        best="" best_score=""
        for dir in $REPORT_FROM; do
            [[ -f $dir/results.tsv ]] || die "$dir has no results.tsv"
            # Disturbed rows first, then the worst disturbance.
            score=$(awk -F'\t' -v s="$scen" -v max="$OTHER_MAX" '
                $2 == s && $3 != "" { n++; if ($10 > max) bad++; if ($10 > m) m = $10 }
                END { if (n) print bad * 1000 + m }' "$dir/results.tsv")
            [[ -n $score ]] || continue
            if [[ -z $best ]] || ((score < best_score)); then
                best=$dir best_score=$score
            fi
        done
        [[ -n $best ]] || continue
        awk -F'\t' -v s="$scen" '$2 == s' "$best/results.tsv" >>"$TSV"
        printf '%s\t%s\n' "$scen" "$best" >>"$RAW_DIR/sources"
    done
}

report() {
    local dir scens
    echo "# Load benchmark, $STAMP"
    echo
    if [[ -n ${REPORT_FROM:-} ]]; then
        echo "Merged from earlier runs, each scenario whole from the run where it was least disturbed:"
        echo
        for dir in $REPORT_FROM; do
            scens=$(awk -F'\t' -v d="$dir" '$2 == d {printf "%s%s", sep, $1; sep = ", "}' "$RAW_DIR/sources")
            [[ -n $scens ]] || continue
            echo "$scens:"
            echo
            cat "$dir/meta.md"
            echo
        done
    else
        cat "$RAW_DIR/meta.md"
        echo
    fi
    echo "CPU columns, in % of one CPU over the measured run: *server* = the server's processes and"
    echo "threads; *wrk* = the load generator; *others* = what other processes took: pinned, on the"
    echo "server's CPU / on wrk's CPU; unpinned, on the whole machine (see \"Mode\" above; † marks a"
    echo "run over $OTHER_MAX% even after $RETRIES retries: contaminated). *CPU µs/req* = the server's"
    echo "CPU time over the measured run (every process of it, see \"Server CPU time\" above) / the"
    echo "requests wrk completed in it. RSS is VmRSS of the server's processes after the run."
    echo
    echo "| scenario | server | threads | req/s | x Granian | p50 ms | p99 ms | errors | RSS MiB | server CPU% | CPU µs/req | wrk CPU% | others % |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    local scen server
    for scen in $SCENARIOS; do
        for server in $SERVERS; do
            awk -F'\t' -v scen="$scen" -v server="$server" -v label="$(label "$server")" -v max="$OTHER_MAX" '
                function commas(n, s) {
                    s = sprintf("%d", n)
                    while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", s)
                    return s
                }
                $1 == "granian" && $2 == scen && $3 != "" { g = $3 }
                $1 == server && $2 == scen { row = $0 }
                END {
                    if (row == "") exit
                    split(row, f, "\t")
                    if (f[12] != "") {
                        printf "| %s | %s | %s | %s | | | | | | | | | |\n", scen, label, f[11], f[12]
                        exit
                    }
                    ratio = (g > 0 && f[3] != "") ? sprintf("%.2f", f[3] / g) : "n/a"
                    rss = f[7] != "" ? sprintf("%.1f", f[7] / 1024) : ""
                    rps = f[3] != "" ? commas(f[3]) : "-"
                    mark = f[10] > max ? " †" : ""
                    printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s%s |\n",
                        scen, label, f[11], rps, ratio, f[4], f[5], f[6], rss, f[8], f[14], f[9], f[13], mark
                }' "$TSV"
        done
    done
    worker_report
}

# Worker mode (serve-procs, serve-pN) against in-process serve (serve-axum) and Granian with
# as many workers, each ratio within one scenario (so within one run), and issue 21's targets
# for worker mode, which are meant for unpinned runs (PIN=0).
worker_report() {
    awk -F'\t' -v scens="$SCENARIOS" -v servers="$SERVERS" -v procs="$OUR_PROCESSES" '
        function worker(s) { return s == "serve-procs" || s ~ /^serve-p[0-9]+$/ }
        function nproc(s) { if (s == "serve-procs") return procs; sub(/^serve-p/, "", s); return s }
        function ratio(a, b) { return (a != "" && b != "" && b + 0 > 0) ? sprintf("%.2f", a / b) : "" }
        function commas(n, s) {
            s = sprintf("%d", n)
            while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", s)
            return s
        }
        function verdict(r, min, max) {
            if (r == "") return ""
            return ((min != "" && r + 0 < min) || (max != "" && r + 0 > max)) ? " (missed)" : " (met)"
        }
        $3 != "" { rps[$1, $2] = $3; us[$1, $2] = $14 }
        END {
            ns = split(scens, sc, " ")
            nv = split(servers, sv, " ")
            for (i = 1; i <= ns; i++) for (j = 1; j <= nv; j++) {
                c = sc[i]; s = sv[j]
                if (!worker(s) || !((s, c) in rps)) continue
                if (!rows++) {
                    print ""
                    print "### Worker mode against in-process serve, same run"
                    print ""
                    print "In-process = `serve-axum` (`serve --server axum --processes 0`). CPU/req counts every"
                    print "process of each server."
                    print ""
                    print "| scenario | server | req/s | x in-process | CPU µs/req | CPU/req x in-process | x Granian, as many workers |"
                    print "|---|---|---:|---:|---:|---:|---:|"
                }
                g = "granian-w" nproc(s)
                if (nproc(s) == 1) g = "granian"
                printf "| %s | %s | %s | %s | %s | %s | %s |\n", c, s, commas(rps[s, c]),
                    ratio(rps[s, c], rps["serve-axum", c]), us[s, c],
                    ratio(us[s, c], us["serve-axum", c]), ratio(rps[s, c], rps[g, c])
            }
            if (!rows) exit
            # Issue 21, worker mode: the ratios its targets are stated in.
            t = ""
            for (j = 1; j <= nv; j++) {
                s = sv[j]
                r = ratio(us[s, "hello-c64"], us["serve-axum", "hello-c64"])
                if (worker(s) && r != "") t = t sep s " " r verdict(r, "", 1.3)
                if (worker(s) && r != "") sep = ", "
            }
            print ""
            print "Worker-mode targets (issue 21; meant for PIN=0):"
            print ""
            if (t != "") print "- hello-c64 CPU µs/req, worker mode / in-process (≤ 1.3): " t
            r = ratio(rps["serve-p1", "hello-c64"], rps["serve-axum", "hello-c64"])
            if (r != "") print "- hello-c64 req/s, `--processes 1` / in-process (≥ 0.8): " r verdict(r, 0.8, "")
            r = ratio(rps["serve-p2", "flask-c64"], rps["granian-w2", "flask-c64"])
            q = ratio(rps["serve-p2", "flask-c64"], rps["serve-axum", "flask-c64"])
            if (r != "" || q != "") {
                printf "- flask-c64 req/s, `--processes 2` / Granian `--workers 2` (≥ 1.0): %s%s;", (r == "" ? "n/a" : r), verdict(r, 1.0, "")
                printf " / in-process (≥ 1.5): %s%s\n", (q == "" ? "n/a" : q), verdict(q, 1.5, "")
            }
        }' "$TSV"
}

# ---------------------------------------------------------------------------------------

main() {
    mkdir -p "$RAW_DIR" "$(dirname "$OUT")"
    if [[ -n ${REPORT_FROM:-} ]]; then
        merge_runs
        report | tee "$OUT"
        log "report written to $OUT"
        return
    fi
    : >"$TSV"
    setup_venv
    setup_wrk
    setup_binaries
    setup_cpu_acct
    log "raw outputs in $RAW_DIR; server CPU from $CPU_METHOD"
    describe_run >"$RAW_DIR/meta.md"
    local scen server
    for scen in $SCENARIOS; do
        for server in $SERVERS; do
            run_one "$server" "$scen"
        done
    done
    report | tee "$OUT"
    log "report written to $OUT"
}

main "$@"
