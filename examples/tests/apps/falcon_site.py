"""Falcon application for the framework tests (examples/tests/micro.rs).

    GET  /things/{owner}/{thing_id:int}   JSON with the path and query parameters
    POST /things/{owner}                  the JSON body back with a Location header
"""

import falcon


class Thing:
    def on_get(self, req, resp, owner, thing_id):
        resp.media = {
            "owner": owner,
            "id": thing_id,
            "limit": req.get_param_as_int("limit", default=10),
            "tags": req.get_param_as_list("tag", default=[]),
        }
        resp.set_header("X-Framework", "falcon")


class Things:
    def on_post(self, req, resp, owner):
        item = req.get_media()
        resp.status = falcon.HTTP_201
        resp.location = f"{req.root_path}/things/{owner}/{item.get('id', 0)}"
        resp.media = {"owner": owner, "created": item, "dry_run": req.get_param_as_bool("dry_run", default=False)}


app = falcon.App()
app.add_route("/things/{owner}/{thing_id:int}", Thing())
app.add_route("/things/{owner}", Things())

application = app
