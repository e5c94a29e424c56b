"""Bottle application for the framework tests (examples/tests/micro.rs).

    GET  /hello/<name>          a greeting; ?greeting= and ?punct= change it
    POST /items/<item_id:int>   the JSON body back, with the path parameter and ?mode=
"""

import bottle

app = bottle.Bottle()


@app.get("/hello/<name>")
def hello(name):
    greeting = bottle.request.query.get("greeting", "Hello")
    punct = bottle.request.query.get("punct", "!")
    bottle.response.set_header("X-Framework", "bottle")
    return f"{greeting}, {name}{punct}"


@app.post("/items/<item_id:int>")
def update_item(item_id):
    body = bottle.request.json
    if body is None:
        bottle.abort(415, "send application/json")
    bottle.response.status = 201
    # Bottle serialises a returned dict as JSON.
    return {
        "id": item_id,
        "mode": bottle.request.query.get("mode", "replace"),
        "received": body,
        "script_name": bottle.request.script_name,
        "url": bottle.request.url,
    }


application = app
