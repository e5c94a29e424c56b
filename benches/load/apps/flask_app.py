"""flask_app: Flask's /json returns a small dict through jsonify."""

from flask import Flask, jsonify

app = Flask(__name__)


@app.route("/json")
def json_view():
    return jsonify({"message": "Hello, World!", "id": 1, "ok": True})


application = app
