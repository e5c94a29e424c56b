"""The Python floor of the criterion benchmarks: the same Python work, timed from Python.

For each app of benches/load/apps/ that benches/benches/engine.rs runs through the engine,
this times, per request, what no server can avoid:

  call     copy a prebuilt environ (the same keys the engine sets, the same ten headers),
           give it a fresh wsgi.input, call the app with a minimal start_response, iterate
           the result and close it;
  environ  build that environ dict in Python from the request's raw parts (what a
           pure-Python server does per request; the engine does it in Rust);

and prints ns per request for each, and floor = call + environ, the figure to divide the
criterion time by (overhead ratio = engine ns / floor ns). Run it with the interpreter the
benchmarks embed, from the load benchmark's venv so that Flask and Django are importable:

    benches/load/.venv/bin/python benches/floor.py [APP ...]

APP is any of hello, stream, echo, flask, django (default: all). Each figure is the median of
REPEAT runs (default 7, env FLOOR_REPEAT) of a loop that lasts at least 0.2 s.

    python benches/floor.py --count N APP

times nothing: it serves N requests of APP (environ built, then the call) and exits, for an
instruction counter (load/instructions.sh runs it under callgrind).
"""

import io
import os
import statistics
import sys
import timeit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "load", "apps"))

# The request of engine.rs: the same ten headers, the same connection facts.
HEADERS = [
    ("host", "127.0.0.1:8000"),
    ("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    ("accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("accept-language", "en-US,en;q=0.5"),
    ("accept-encoding", "gzip, deflate, br"),
    ("connection", "keep-alive"),
    ("cookie", "sessionid=0123456789abcdef; csrftoken=fedcba9876543210"),
    ("upgrade-insecure-requests", "1"),
    ("cache-control", "max-age=0"),
    ("referer", "http://127.0.0.1:8000/index.html"),
]
ECHO_BODY = b"x" * 65536

TEMPLATE = {
    "wsgi.version": (1, 0),
    "wsgi.multithread": False,
    "wsgi.multiprocess": False,
    "wsgi.run_once": False,
    "wsgi.input_terminated": True,
    "wsgi.url_scheme": "http",
    "wsgi.errors": sys.stderr,
    "SERVER_SOFTWARE": "floor",
}


def build_environ(method, target, headers, body_length):
    """Builds an environ from a request's raw parts, as a minimal Python server would."""
    env = TEMPLATE.copy()
    path, _, query = target.partition("?")
    env["REQUEST_METHOD"] = method
    env["SCRIPT_NAME"] = ""
    env["PATH_INFO"] = path
    env["QUERY_STRING"] = query
    env["REQUEST_URI"] = env["RAW_URI"] = target
    env["SERVER_PROTOCOL"] = "HTTP/1.1"
    env["SERVER_NAME"] = "127.0.0.1"
    env["SERVER_PORT"] = "8000"
    env["REMOTE_ADDR"] = "127.0.0.1"
    env["REMOTE_PORT"] = "54321"
    if body_length is not None:
        env["CONTENT_TYPE"] = "application/octet-stream"
        env["CONTENT_LENGTH"] = str(body_length)
    for name, value in headers:
        key = "HTTP_" + name.upper().replace("-", "_")
        if key in env:
            env[key] += "," + value
        else:
            env[key] = value
    return env


def start_response(status, headers, exc_info=None):
    return None


def call(app, environ, body):
    """One request: fresh copy of the prebuilt environ and input, call, drain, close."""
    env = environ.copy()
    env["wsgi.input"] = io.BytesIO(body)
    result = app(env, start_response)
    try:
        for chunk in result:
            pass
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()


def measure(fn, repeat):
    """Median ns per call of `fn` over `repeat` runs of at least 0.2 s each."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    runs = timer.repeat(repeat=repeat, number=number)
    return statistics.median(runs) / number * 1e9


def cases():
    """(name, module, method, target, body) for each app engine.rs benchmarks."""
    return [
        ("hello", "hello", "GET", "/hello?name=world", b""),
        ("stream", "stream", "GET", "/stream", b""),
        ("echo", "echo", "POST", "/echo", ECHO_BODY),
        ("flask", "flask_app", "GET", "/json", b""),
        ("django", "django_app", "GET", "/plain", b""),
    ]


def count(n, wanted):
    """Serves `n` requests of the app named `wanted`, environ and call, untimed."""
    for name, module, method, target, body in cases():
        if name != wanted:
            continue
        app = __import__(module).application
        length = len(body) if body else None
        for _ in range(n):
            call(app, build_environ(method, target, HEADERS, length), body)
        return
    sys.exit(f"floor.py: no app named {wanted!r}")


def main(argv):
    if argv[:1] == ["--count"]:
        count(int(argv[1]), argv[2])
        return
    wanted = set(argv) or {name for name, *_ in cases()}
    repeat = int(os.environ.get("FLOOR_REPEAT", "7"))
    print(f"# Python {sys.version.split()[0]} ({sys.executable}); ns per request, "
          f"median of {repeat}")
    print(f"{'app':<8} {'call':>10} {'environ':>10} {'floor':>10}")
    for name, module, method, target, body in cases():
        if name not in wanted:
            continue
        try:
            app = __import__(module).application
        except ImportError as e:
            print(f"{name:<8} skipped: {e}")
            continue
        length = len(body) if body else None
        environ = build_environ(method, target, HEADERS, length)
        call(app, environ, body)  # warm caches and lazy imports (Flask) outside the timing
        t_call = measure(lambda: call(app, environ, body), repeat)
        t_env = measure(lambda: build_environ(method, target, HEADERS, length), repeat)
        print(f"{name:<8} {t_call:>10.0f} {t_env:>10.0f} {t_call + t_env:>10.0f}")


if __name__ == "__main__":
    main(sys.argv[1:])
