"""Flask application for the framework tests (examples/tests/flask.rs).

    GET  /api/items/<int:id>   JSON, with the query's `tag` values
    POST /form                 the urlencoded form fields as JSON
    POST /login                puts `user` in the session, sets a `theme` cookie,
                               redirects to /whoami with url_for
    GET  /whoami               the session's user and visit count, the theme cookie
    POST /upload               multipart files: name, size and SHA-256 of each
    GET  /stream               streamed with stream_with_context; waits for ?gate=TOKEN
    GET  /download             send_file of a generated file (through wsgi.file_wrapper)
    GET  /boom                 raises: the custom 500 handler answers
    anything else              the custom 404 handler answers
"""

import hashlib
import os
import sys
import tempfile

from flask import (
    Flask, jsonify, redirect, request, send_file, session, stream_with_context, url_for,
)

# The helpers the test apps of every crate share live in test-support/python.
_SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../../test-support/python")
sys.path.insert(0, os.path.normpath(_SHARED))
from wsgi_test_support import report_iterable, wait_for_gate  # noqa: E402

# The test computes the same bytes: i % 251 for i in range(DOWNLOAD_SIZE). One file for
# every run, written whole under a temporary name so a concurrent run never sees it half done.
DOWNLOAD_SIZE = 1_500_000
DOWNLOAD_PATH = os.path.join(tempfile.gettempdir(), f"flask-site-download-{DOWNLOAD_SIZE}.bin")
if not (os.path.isfile(DOWNLOAD_PATH) and os.path.getsize(DOWNLOAD_PATH) == DOWNLOAD_SIZE):
    _partial = f"{DOWNLOAD_PATH}.{os.getpid()}"
    with open(_partial, "wb") as f:
        f.write(bytes(i % 251 for i in range(DOWNLOAD_SIZE)))
    os.replace(_partial, DOWNLOAD_PATH)

app = Flask(__name__)
app.secret_key = b"flask-site test key, not a secret"
app.config["MAX_CONTENT_LENGTH"] = 32 * 1024 * 1024


@app.get("/api/items/<int:item_id>")
def item(item_id):
    return jsonify(id=item_id, name=f"item {item_id}", tags=request.args.getlist("tag"))


@app.post("/form")
def form():
    return jsonify(
        name=request.form["name"],
        colours=request.form.getlist("colour"),
        mimetype=request.mimetype,
    )


@app.post("/login")
def login():
    session["user"] = request.form["user"]
    session["visits"] = 0
    response = redirect(url_for("whoami"))
    response.set_cookie("theme", request.form.get("theme", "light"), httponly=True)
    return response


@app.get("/whoami")
def whoami():
    if "user" in session:
        session["visits"] = session.get("visits", 0) + 1
    return jsonify(
        user=session.get("user"),
        visits=session.get("visits"),
        theme=request.cookies.get("theme"),
        script_root=request.script_root,
    )


@app.post("/upload")
def upload():
    files = []
    for field, storage in request.files.items(multi=True):
        hasher = hashlib.sha256()
        size = 0
        while True:
            piece = storage.stream.read(64 * 1024)
            if not piece:
                break
            size += len(piece)
            hasher.update(piece)
        files.append({
            "field": field,
            "filename": storage.filename,
            "mimetype": storage.mimetype,
            "size": size,
            "sha256": hasher.hexdigest(),
        })
    return jsonify(files=files, note=request.form.get("note"))


@app.get("/stream")
def stream():
    environ = request.environ

    @stream_with_context
    def generate():
        # `request` is only usable here because stream_with_context keeps its context.
        yield f"hello {request.args.get('name', 'nobody')}\n"
        if not wait_for_gate(environ):
            yield "gate never opened\n"
            return
        yield f"from {request.script_root}{request.path}\n"
        yield "done\n"

    return app.response_class(generate(), mimetype="text/plain")


@app.get("/download")
def download():
    return send_file(
        DOWNLOAD_PATH,
        mimetype="application/octet-stream",
        as_attachment=True,
        download_name="data.bin",
    )


@app.get("/boom")
def boom():
    raise RuntimeError("flask_site was asked to fail")


@app.errorhandler(404)
def not_found(error):
    return jsonify(error="not found", path=request.path), 404


@app.errorhandler(500)
def server_error(error):
    return "custom 500: the view failed\n", 500, {"Content-Type": "text/plain; charset=utf-8"}


application = report_iterable(app)
