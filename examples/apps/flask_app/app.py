"""A small Flask application, the "legacy" side of the mount examples.

    GET /            a page whose links url_for builds (they carry the mount prefix)
    GET /api/hello   JSON: ?name= greets someone
    GET /stream      a countdown streamed line by line, one line every 0.2 s

The WSGI callable is the Flask object itself: `Engine::builder(".../app.py:app")`.
"""

import time

from flask import Flask, jsonify, render_template_string, request, stream_with_context, url_for

app = Flask(__name__)

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Flask, mounted</title></head>
<body>
<h1>Flask, served in-process by Rust</h1>
<p>This app is mounted at <code>{{ request.script_root or "/" }}</code>.</p>
<ul>
  <li><a href="{{ url_for('hello', name='Rust') }}">JSON greeting</a></li>
  <li><a href="{{ url_for('countdown') }}">a streamed countdown</a></li>
</ul>
</body></html>
"""


@app.get("/")
def index():
    return render_template_string(PAGE)


@app.get("/api/hello")
def hello():
    name = request.args.get("name", "world")
    return jsonify(
        message=f"Hello, {name}!",
        mounted_at=request.script_root,
        link=url_for("hello", name=name),
    )


@app.get("/stream")
def countdown():
    @stream_with_context
    def lines():
        start = max(0, min(100, request.args.get("from", 5, type=int)))
        for n in range(start, 0, -1):
            yield f"{n}...\n"
            time.sleep(0.2)
        yield "liftoff\n"

    return app.response_class(lines(), mimetype="text/plain")
