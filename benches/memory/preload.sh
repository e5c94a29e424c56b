#!/usr/bin/env bash
# Issue 24's measurements of preloading (`wsgi-serve --preload`): how much memory the workers
# share, and how long a restart takes until new code answers. Not pinned, no load generator:
# the machine may be shared, so each figure comes with its ratio to the baseline measured in
# the same invocation (the same server without --preload), and every run is listed.
#
#   benches/memory/preload.sh                       # both parts, ~6 minutes
#   PARTS=pss RUNS=5 benches/memory/preload.sh      # only the memory part, 5 starts each
#
# pss: the Django benchmark app (benches/load/apps/django_app.py) under `wsgi-serve
#   --processes 4 --threads 2` and `gunicorn --workers 4 --worker-class gthread --threads 2`,
#   each with and without --preload, started RUNS times in turn. After every worker is up,
#   WARM sequential requests to /plain and 1 s to settle, it reads /proc/PID/smaps_rollup of
#   each process: the host (gunicorn: the arbiter), the template (wsgi-serve --preload: the
#   host's child that forks the workers) and the workers. Reported: per role the summed PSS
#   (each shared page divided among the processes mapping it: the figure that adds up to
#   the machine's memory), the workers' summed RSS and private memory, for the median run by
#   the workers' PSS; and the ratio of the preloaded server's to the same server's without.
# restart: `wsgi-serve --processes 2 --threads 2` on benches/memory/slow_version.py (sleeps 2
#   s at import, answers its VERSION), with and without --preload. For each of RESTARTS
#   restarts per server start (RESTART_RUNS starts): rewrite VERSION in the file, touch
#   tmp/restart.txt (and, with TRIGGERS=touch,hup, also send SIGHUP in a separate series:
#   the restart file is polled once a second, which adds 0-1 s to its figures), then GET /
#   from 4 clients (one request at a time each, 10 ms apart; a lone sequential client sees
#   only the worker the host routes it to) until the last 20 answers are new and none was
#   old for 0.5 s: the time to the first answer by the new code, and to the last answer by the
#   old code (both workers replaced). Median, min, max, and the medians' ratio to the same trigger
#   without --preload. Any answer other than the old or new version fails the run.
#
# Settings (environment):
#   PARTS=pss,restart   which parts to run
#   RUNS=3 WARM=200     pss: server starts per server, requests before measuring
#   WORKERS=4           pss: --processes / --workers
#   RESTART_RUNS=2 RESTARTS=3 TRIGGERS=touch,hup   restart: starts, restarts per start, how
#   VENV=benches/load/.venv   a virtualenv with Django and gunicorn (made from
#                       benches/load/requirements.txt if it has not both)
#   SERVE_BIN           a prebuilt wsgi-serve (default: cargo build --release -p wsgi-serve)
#   PORT_BASE=19080     ports used: PORT_BASE+1, +2, ... (127.0.0.1 only)
#   RAW_DIR             the servers' output and results.json (default: a new temporary dir)
#   OUT                 the report (default: benches/results/<UTC date>-preload-<commit>.md)
set -euo pipefail

MEM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$(dirname "$MEM_DIR")")
VENV=${VENV:-$ROOT/benches/load/.venv}

if ! "$VENV/bin/python" -c 'import django, gunicorn' 2>/dev/null; then
    echo "making $VENV from benches/load/requirements.txt" >&2
    [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$ROOT/benches/load/requirements.txt"
fi
if [[ -z ${SERVE_BIN:-} ]]; then
    (cd "$ROOT" && cargo build --quiet --release -p wsgi-serve)
    SERVE_BIN=$ROOT/target/release/wsgi-serve
fi
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD)
git -C "$ROOT" diff --quiet HEAD -- wsgi-core examples/wsgi-serve/src || COMMIT+="+changes"
OUT=${OUT:-$ROOT/benches/results/$(date -u +%F)-preload-${COMMIT%+changes}.md}
RAW_DIR=${RAW_DIR:-$(mktemp -d -t wsgi-preload-XXXXXX)}
echo "raw output: $RAW_DIR" >&2

exec "$VENV/bin/python" "$MEM_DIR/preload.py" \
    --serve-bin "$SERVE_BIN" --venv "$VENV" --out "$OUT" --raw "$RAW_DIR" --commit "$COMMIT" \
    --parts "${PARTS:-pss,restart}" --workers "${WORKERS:-4}" --runs "${RUNS:-3}" \
    --warm "${WARM:-200}" --restart-runs "${RESTART_RUNS:-2}" --restarts "${RESTARTS:-3}" \
    --triggers "${TRIGGERS:-touch,hup}" --port-base "${PORT_BASE:-19080}"
