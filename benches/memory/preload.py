"""The measurements of issue 24 (preloading): memory shared, and restart latency.

Run by benches/memory/preload.sh, which documents the settings; this file does the work:

- pss: for each server (wsgi-serve --processes 4, gunicorn --workers 4, each with and
  without --preload) on the Django benchmark app, start it, send WARM requests, then read
  /proc/PID/smaps_rollup of every process it runs: the host (gunicorn's arbiter), the
  template (wsgi-serve --preload only) and the workers. RUNS starts per server; the median
  run (by the workers' summed PSS) is reported, and its ratio to the same server without
  --preload from the same invocation.
- restart: wsgi-serve --processes 2 on slow_version.py (2 s to import), with and without
  --preload: rewrite its VERSION, touch tmp/restart.txt (or send SIGHUP), then poll GET /
  from CLIENTS threads until ALL_NEW answers in a row are new and none old for 0.5 s: the
  first answer by new code, and the last answer by the old code (every worker replaced).
  RESTARTS restarts per server start; median, min and max.

Every process started is stopped by its pid (SIGTERM, then SIGKILL to whatever of its
descendants remains).
"""

import argparse
import datetime
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
APPS = os.path.join(ROOT, "benches", "load", "apps")


def rollup(pid):
    """Rss, Pss and Private (clean + dirty) of `pid` in KiB, or None once it is gone."""
    out = {"rss": 0, "pss": 0, "private": 0}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, value = line.partition(":")
                kib = value.split()[0] if value.split() else "0"
                if key == "Rss":
                    out["rss"] = int(kib)
                elif key == "Pss":
                    out["pss"] = int(kib)
                elif key in ("Private_Clean", "Private_Dirty"):
                    out["private"] += int(kib)
    except (FileNotFoundError, ProcessLookupError):
        return None
    return out


def children(pid):
    """The pids whose parent is `pid`."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat.rsplit(") ", 1)[-1].split()
        if len(rest) > 1 and rest[0] != "Z" and int(rest[1]) == pid:
            found.append(int(name))
    return sorted(found)


def descendants(pid):
    out = []
    for child in children(pid):
        out.append(child)
        out.extend(descendants(child))
    return out


def roles(pid):
    """{host: pid, template: [pids], workers: [pids]}: a child of the host with children
    of its own is a template (wsgi-serve --preload), its children workers."""
    template, workers = [], []
    for child in children(pid):
        grandchildren = children(child)
        if grandchildren:
            template.append(child)
            workers.extend(grandchildren)
        else:
            workers.append(child)
    return {"host": [pid], "template": template, "workers": workers}


def get(port, path="/", timeout=2.0):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    except OSError:
        return None, ""
    finally:
        conn.close()


def wait_ready(port, path, limit=60.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        status, body = get(port, path)
        if status == 200:
            return body
        time.sleep(0.05)
    raise RuntimeError(f"no answer on port {port} within {limit} s")


def start(cmd, cwd, log_path, env=None):
    log = open(log_path, "ab")
    log.write(("\n$ " + " ".join(cmd) + "\n").encode())
    log.flush()
    return subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=log, env=env)


def stop(proc):
    """SIGTERM to the server, then SIGKILL to any of its processes still there, by pid."""
    left = descendants(proc.pid)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for pid in left:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Ports:
    def __init__(self, base):
        self.next = base

    def take(self):
        self.next += 1
        return self.next


def serve_cmd(args, port, extra, app, venv):
    return [args.serve_bin, "--server", "axum", "--bind", f"{HOST}:{port}",
            "--venv", venv, "--log-level", "warn", *extra, app]


def serve_env(venv):
    libdir = subprocess.check_output(
        [os.path.join(venv, "bin", "python"), "-c",
         "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"], text=True).strip()
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = libdir + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    return env


def measure_pss(args, ports, raw):
    venv = args.venv
    env = serve_env(venv)
    n = str(args.workers)
    servers = {
        "wsgi-serve": lambda port: serve_cmd(
            args, port, ["--processes", n, "--threads", "2"], os.path.join(APPS, "django_app.py"), venv),
        "wsgi-serve --preload": lambda port: serve_cmd(
            args, port, ["--processes", n, "--threads", "2", "--preload"],
            os.path.join(APPS, "django_app.py"), venv),
        "gunicorn": lambda port: [
            os.path.join(venv, "bin", "gunicorn"), "--workers", n, "--worker-class", "gthread",
            "--threads", "2", "--bind", f"{HOST}:{port}", "--log-level", "warning",
            "django_app:application"],
        "gunicorn --preload": lambda port: [
            os.path.join(venv, "bin", "gunicorn"), "--workers", n, "--worker-class", "gthread",
            "--threads", "2", "--bind", f"{HOST}:{port}", "--log-level", "warning", "--preload",
            "django_app:application"],
    }
    results = {name: [] for name in servers}
    # Interleaved, so that the machine's drift over the run falls on every server alike.
    for run in range(args.runs):
        for name, make in servers.items():
            port = ports.take()
            proc = start(make(port), APPS, os.path.join(raw, "pss.log"), env=env)
            try:
                wait_ready(port, "/plain")
                # Every worker up: the servers answer before all have started.
                deadline = time.monotonic() + 30
                while len(roles(proc.pid)["workers"]) < args.workers and time.monotonic() < deadline:
                    time.sleep(0.05)
                for _ in range(args.warm):
                    status, _ = get(port, "/plain")
                    assert status == 200, f"{name}: {status}"
                time.sleep(args.settle)
                r = roles(proc.pid)
                sample = {}
                for role, pids in r.items():
                    mems = [m for m in (rollup(p) for p in pids) if m]
                    sample[role] = {
                        "count": len(mems),
                        **{k: sum(m[k] for m in mems) for k in ("rss", "pss", "private")},
                    }
                results[name].append(sample)
                print(f"  run {run + 1} {name}: workers PSS {sample['workers']['pss'] / 1024:.1f} MiB"
                      f" ({sample['workers']['count']}), host {sample['host']['pss'] / 1024:.1f},"
                      f" template {sample['template']['pss'] / 1024:.1f}", file=sys.stderr)
            finally:
                stop(proc)
    return results


def median_run(samples):
    ordered = sorted(samples, key=lambda s: s["workers"]["pss"])
    return ordered[(len(ordered) - 1) // 2]


def restart_once(port, old, new, trigger, proc, app_dir, args):
    """Seconds from the trigger to the first answer by the new code, and to the last answer
    by the old code (every worker replaced). CLIENTS pollers, each with one
    request at a time: a single sequential client would see only the worker the host
    routes a lone request to, which may stay an old one until the roll reaches it."""
    app = os.path.join(app_dir, "slow_version.py")
    with open(app) as f:
        code = f.read()
    with open(app, "w") as f:
        f.write(code.replace(f'VERSION = "{old}"', f'VERSION = "{new}"'))
    answers = []  # (arrival, body), appended by the pollers
    lock = threading.Lock()
    done = threading.Event()

    def poll():
        while not done.is_set():
            status, body = get(port, "/", timeout=5)
            with lock:
                answers.append((time.monotonic(), body if status == 200 else f"status {status}"))
            time.sleep(args.poll_ms / 1000)

    began = time.monotonic()
    if trigger == "touch":
        os.utime(os.path.join(app_dir, "tmp", "restart.txt"))
    else:
        proc.send_signal(signal.SIGHUP)
    pollers = [threading.Thread(target=poll) for _ in range(args.clients)]
    for t in pollers:
        t.start()
    deadline = began + 60
    try:
        while time.monotonic() < deadline:
            time.sleep(0.05)
            with lock:
                tail = answers[-args.all_new:]
                last_old = max((at for at, body in answers if body == old), default=began)
            # And none old for half a second: the old workers are gone, not just skipped.
            if (len(tail) == args.all_new and all(body == new for _, body in tail)
                    and time.monotonic() - last_old >= 0.5):
                break
        else:
            raise RuntimeError(f"version {new} never answered in full")
    finally:
        done.set()
        for t in pollers:
            t.join()
    answers.sort()
    bad = [body for _, body in answers if body not in (old, new)]
    if bad:
        raise RuntimeError(f"failed answers during the restart: {bad[:5]}")
    first = next(at for at, body in answers if body == new) - began
    # A request an old worker took before it was replaced may still be answered after new
    # ones: the old code's last answer is when it stopped serving.
    last_old = max((at - began for at, body in answers if body == old), default=0.0)
    return first, last_old


def measure_restart(args, ports, raw):
    env = serve_env(args.venv)
    results = {}
    for trigger in args.triggers:
        for preload in (False, True):
            name = f"{trigger}, {'--preload' if preload else 'no preload'}"
            results[name] = {"first": [], "all": []}
    for run in range(args.restart_runs):
        for trigger in args.triggers:
            for preload in (False, True):
                name = f"{trigger}, {'--preload' if preload else 'no preload'}"
                app_dir = tempfile.mkdtemp(prefix="wsgi-preload-restart-")
                try:
                    shutil.copy(os.path.join(HERE, "slow_version.py"), app_dir)
                    os.mkdir(os.path.join(app_dir, "tmp"))
                    open(os.path.join(app_dir, "tmp", "restart.txt"), "w").close()
                    port = ports.take()
                    extra = ["--processes", "2", "--threads", "2"] + (["--preload"] if preload else [])
                    cmd = serve_cmd(args, port, extra, "slow_version.py", args.venv)
                    proc = start(cmd, app_dir, os.path.join(raw, "restart.log"), env=env)
                    try:
                        assert wait_ready(port, "/") == "0"
                        version = 0
                        for _ in range(args.restarts):
                            # The restart file's watcher compares modification times; let
                            # the last restart settle and the clock move on.
                            time.sleep(args.gap)
                            first, every = restart_once(
                                port, str(version), str(version + 1), trigger, proc, app_dir, args)
                            version += 1
                            results[name]["first"].append(first)
                            results[name]["all"].append(every)
                            print(f"  {name}: first new answer {first:.3f} s, last old {every:.3f} s",
                                  file=sys.stderr)
                    finally:
                        stop(proc)
                finally:
                    shutil.rmtree(app_dir, ignore_errors=True)
    return results


def mib(kib):
    return f"{kib / 1024:.1f}"


def report_pss(results, args):
    lines = [
        f"Summed over each role's processes, MiB, the median of {args.runs} starts (by the"
        f" workers' PSS) after {args.warm} requests; ratio: to the same server without"
        " --preload, in this run.",
        "",
        "| server | workers PSS | ratio | workers RSS | workers private | host PSS | template PSS | total PSS | total ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    medians = {name: median_run(samples) for name, samples in results.items()}
    for name, m in medians.items():
        base = medians[name.replace(" --preload", "")]
        total = sum(m[r]["pss"] for r in ("host", "template", "workers"))
        base_total = sum(base[r]["pss"] for r in ("host", "template", "workers"))
        template = mib(m["template"]["pss"]) if m["template"]["count"] else "–"
        lines.append(
            f"| {name} ({m['workers']['count']} workers) | {mib(m['workers']['pss'])} |"
            f" {m['workers']['pss'] / base['workers']['pss']:.2f}x | {mib(m['workers']['rss'])} |"
            f" {mib(m['workers']['private'])} | {mib(m['host']['pss'])} | {template} |"
            f" {mib(total)} | {total / base_total:.2f}x |")
    lines.append("")
    lines.append("Every run (workers PSS MiB): " + "; ".join(
        f"{name}: " + ", ".join(mib(s["workers"]["pss"]) for s in samples)
        for name, samples in results.items()))
    return lines


def report_restart(results, args):
    lines = [
        "Seconds from the trigger to the first answer by the new code, and to"
        f" the last answer by the old code (every worker replaced); {args.clients}"
        f" clients each sending GET / every {args.poll_ms} ms after its last answer;"
        f" {args.restart_runs} server starts x {args.restarts} restarts; ratio: median to the"
        " same trigger without --preload, in this run.",
        "",
        "| trigger, mode | first new: median | min | max | ratio | last old: median | min | max | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        base = results[name.replace("--preload", "no preload")]
        cells = []
        for key in ("first", "all"):
            values = r[key]
            median = statistics.median(values)
            cells.append(f"{median:.2f} | {min(values):.2f} | {max(values):.2f} |"
                         f" {median / statistics.median(base[key]):.2f}x")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Every restart (first new, s): " + "; ".join(
        f"{name}: " + ", ".join(f"{v:.2f}" for v in r["first"]) for name, r in results.items()))
    return lines


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--serve-bin", required=True)
    p.add_argument("--venv", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--raw", required=True)
    p.add_argument("--commit", default="")
    p.add_argument("--parts", default="pss,restart")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--warm", type=int, default=200)
    p.add_argument("--settle", type=float, default=1.0)
    p.add_argument("--restart-runs", type=int, default=2)
    p.add_argument("--restarts", type=int, default=3)
    p.add_argument("--triggers", default="touch,hup")
    p.add_argument("--poll-ms", type=int, default=10)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--all-new", type=int, default=20)
    p.add_argument("--gap", type=float, default=1.5)
    p.add_argument("--port-base", type=int, default=19080)
    args = p.parse_args()
    args.triggers = args.triggers.split(",")
    parts = args.parts.split(",")
    ports = Ports(args.port_base)
    os.makedirs(args.raw, exist_ok=True)
    python = subprocess.check_output(
        [os.path.join(args.venv, "bin", "python"), "-c",
         "import sys, django, gunicorn; print(sys.version.split()[0], django.__version__, gunicorn.__version__)"],
        text=True).split()
    now = datetime.datetime.now(datetime.timezone.utc)
    out = [
        f"# Preloading: memory and restart latency ({now:%Y-%m-%d %H:%M} UTC, wsgi-serve at {args.commit})",
        "",
        f"- `benches/memory/preload.sh`; {os.cpu_count()} CPUs, shared with other work (not pinned);"
        f" Python {python[0]}, Django {python[1]}, gunicorn {python[2]}; Linux {os.uname().release}",
        f"- settings: PARTS={','.join(parts)} WORKERS={args.workers} RUNS={args.runs} WARM={args.warm}"
        f" RESTART_RUNS={args.restart_runs} RESTARTS={args.restarts} TRIGGERS={','.join(args.triggers)}",
        "",
    ]
    raw = {}
    if "pss" in parts:
        print("pss:", file=sys.stderr)
        raw["pss"] = measure_pss(args, ports, args.raw)
        out += ["## Memory of 4 workers of the Django app (`benches/load/apps/django_app.py`)", ""]
        out += report_pss(raw["pss"], args) + [""]
    if "restart" in parts:
        print("restart:", file=sys.stderr)
        raw["restart"] = measure_restart(args, ports, args.raw)
        out += ["## Restart: new code answering (`slow_version.py`, 2 s import, `--processes 2`)", ""]
        out += report_restart(raw["restart"], args) + [""]
    with open(os.path.join(args.raw, "results.json"), "w") as f:
        json.dump(raw, f, indent=1)
    text = "\n".join(out)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
