#!/usr/bin/env bash
# Where `serve`'s CPU goes per request, by thread name, over every process of the server
# (a worker process's threads included), and how often each kind of thread sleeps or is
# preempted per request (context switches): runs it on an app, loads it with wrk, and reads
# each thread's user+system time and switch counts from /proc before and after. Unpinned,
# the way users run servers; read the figures as ratios between lines of one run, since the
# machine is shared.
#
#   benches/load/per-thread.sh "--processes 0"    # in-process; "" is serve's default, one worker
#   benches/load/per-thread.sh "--processes 1 --threads 32"
#   SERVE_BIN=/tmp/serve.old APP=flask_app.py URL_PATH=/json benches/load/per-thread.sh "--processes 2"
#
# Settings (environment): SERVE_BIN (default target/release/wsgi-serve), APP=hello.py (in
# benches/load/apps), URL_PATH=/, CONNS=64, SECONDS_MEASURED=4, PORT=18998, and VENV for an
# app that needs packages (run.sh makes benches/load/.venv).
set -euo pipefail

LOAD_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$(dirname "$LOAD_DIR")")
SERVE_BIN=${SERVE_BIN:-$ROOT/target/release/wsgi-serve}
APP=${APP:-hello.py}
URL_PATH=${URL_PATH:-/}
CONNS=${CONNS:-64}
SECONDS_MEASURED=${SECONDS_MEASURED:-4}
PORT=${PORT:-18998}
read -ra SERVE_EXTRA <<<"${1:-}"
[[ -n ${VENV:-} ]] && SERVE_EXTRA+=(--venv "$VENV")
URL=http://127.0.0.1:$PORT$URL_PATH

command -v wrk >/dev/null || { echo "per-thread.sh: wrk is not installed" >&2; exit 1; }
[[ -x $SERVE_BIN ]] || { echo "per-thread.sh: no $SERVE_BIN (cargo build --release -p wsgi-serve)" >&2; exit 1; }

cd "$LOAD_DIR/apps"
"$SERVE_BIN" --bind "127.0.0.1:$PORT" --log-level warn "${SERVE_EXTRA[@]}" "$APP" >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null' EXIT
for _ in $(seq 200); do curl -s -o /dev/null "$URL" && break; sleep 0.05; done

# The server and its descendants (worker processes).
tree() {
    echo "$1"
    local child
    for child in $(ps -o pid= --ppid "$1"); do tree "$child"; done
}
# One line per thread: "pid/tid name ticks switches" (utime + stime, fields 14 and 15 of
# stat; voluntary + involuntary context switches from status: each is a sleep or a
# preemption, the wake-ups that dominate the worker-mode profile).
snapshot() {
    local pid task stat rest switches
    for pid in $(tree "$server"); do
        for task in /proc/"$pid"/task/*; do
            stat=$(cat "$task/stat" 2>/dev/null) || continue
            switches=$(awk '/ctxt_switches/ {n += $2} END {print n + 0}' "$task/status" 2>/dev/null) || continue
            rest=${stat##*) }
            # shellcheck disable=SC2086
            set -- $rest
            echo "$pid/${task##*/} $(tr ' ' '_' <"$task/comm") $((${12} + ${13})) $switches"
        done
    done | sort
}

wrk -t2 -c"$CONNS" -d1 "$URL" >/dev/null 2>&1 # warm-up
before=$(snapshot)
out=$(wrk -t2 -c"$CONNS" -d"$SECONDS_MEASURED" "$URL" 2>&1)
after=$(snapshot)
requests=$(awk '/requests in/ {print $1}' <<<"$out")
ticks_per_second=$(getconf CLK_TCK)
echo "serve ${1:-} $APP c$CONNS: $(awk '/Requests\/sec/ {print $2}' <<<"$out") req/s"
# Threads named wsgi-python-3 and wsgi-python-5 add up as wsgi-python.
# Fields after the join: pid/tid, then name ticks switches before, then after.
join <(echo "$before") <(echo "$after") | awk -v r="$requests" -v hz="$ticks_per_second" '
    { name = $2; sub(/-[0-9]+$/, "", name); used[name] += $6 - $3; sw[name] += $7 - $4 }
    END {
        for (n in used) {
            total += used[n]; switches += sw[n]
            if (used[n] > 0) printf "  %-20s %7.1f us/req %6.3f switches/req\n", n, used[n] * 1e6 / hz / r, sw[n] / r
        }
        printf "  %-20s %7.1f us/req %6.3f switches/req\n", "(all)", total * 1e6 / hz / r, switches / r
    }' | sort -k2 -rn
