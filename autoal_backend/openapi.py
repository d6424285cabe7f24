"""The OpenAPI 3 description of the backend's routes, served at ``/openapi.json``.

Written by hand next to the routes it describes (``app.py``), so scripts and fuzzers
(``tests/backend/test_openapi_fuzz.py`` runs schemathesis against it) know every route, its
body and its answers. Error answers are always ``{"error": "<what is wrong>"}``.
"""

from typing import Any

ERROR = {"$ref": "#/components/schemas/Error"}
PROJECT_ID = {
    "oneOf": [
        {"type": "integer", "minimum": 1},
        {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$"},
    ],
    "description": "a project id, or Label Studio's '<id>.<created timestamp>'",
}


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    reasons = {
        400: "bad input, named in the message",
        401: "basic auth or the webhook secret is missing or wrong",
        404: "unknown project or route",
        409: "the backend tracks its maximum of projects",
        413: "the body is larger than AUTOAL_MAX_BODY_MB",
        422: "a label config or setting the backend cannot work with",
        429: "too many unknown projects wait for Label Studio to confirm them",
    }
    return {str(c): {"description": reasons[c], **_json(ERROR)} for c in codes}


def _route(
    summary: str, ok: dict, errors: tuple[int, ...], body: dict | None = None, **extra: Any
) -> dict:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {**ok, **_errors(*errors)},
        **extra,
    }
    if body is not None:
        operation["requestBody"] = {"required": True, **_json(body)}
    return operation


def openapi_spec(basic_auth: bool = False) -> dict:
    """The description; ``basic_auth`` marks the routes that need it (all but /health,
    /webhook and /openapi.json)."""
    guarded: dict[str, Any] = {"security": [{"basic": []}]} if basic_auth else {}
    auth = (401,) if basic_auth else ()
    json_object = {"type": "object", "additionalProperties": True}
    status = _json(
        {"type": "object", "properties": {"status": {"type": "string"}}, "required": ["status"]}
    )
    paths = {
        "/health": {
            "get": _route(
                "Liveness: UP, or DEGRADED with a reason while Label Studio is down",
                {"200": {"description": "the backend answers", **status}},
                (),
            )
        },  # fmt: skip
        "/": {
            "get": _route(
                "The projects page for a browser (Accept: text/html), else the same as /health",
                {"200": {"description": "ok", **status}},
                auth,
                **guarded,
            )
        },  # fmt: skip
        "/setup": {
            "post": _route(
                "Label Studio connects a project: its label config, and its own settings in extra_params",
                {
                    "200": {
                        "description": "the project's current model version",
                        **_json(
                            {
                                "type": "object",
                                "properties": {"model_version": {"type": "string"}},
                                "required": ["model_version"],
                            }
                        ),
                    }
                },
                (400, 409, 413, 422, *auth),
                {
                    "type": "object",
                    "required": ["project", "schema"],
                    "properties": {
                        "project": PROJECT_ID,
                        "schema": {"type": "string"},
                        "hostname": {"type": "string"},
                        "access_token": {"type": "string"},
                        "extra_params": {"type": "object", "nullable": True},
                    },
                },
                **guarded,
            )
        },  # fmt: skip
        "/predict": {
            "post": _route(
                "The latest round's prediction for each task (its guess, confidence and queue score)",
                {
                    "200": {
                        "description": "one result per task, in order",
                        **_json(
                            {
                                "type": "object",
                                "required": ["results"],
                                "properties": {"results": {"type": "array", "items": json_object}},
                            }
                        ),
                    }
                },
                (400, 404, 409, 413, 422, *auth),
                {
                    "type": "object",
                    "required": ["tasks", "project"],
                    "properties": {
                        "tasks": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["id"],
                                "properties": {"id": {"type": "integer"}},
                            },
                        },
                        "project": PROJECT_ID,
                        "label_config": {"type": "string"},
                        "params": json_object,
                    },
                },
                **guarded,
            )
        },  # fmt: skip
        "/webhook": {
            "post": _route(
                "A Label Studio event: a hint that a project changed (queues a round)",
                {"201": {"description": "queued, coalesced, noted or ignored", **status}},
                (400, 401, 413, 429),
                {
                    "type": "object",
                    "required": ["action"],
                    "properties": {
                        "action": {"type": "string"},
                        "project": {"oneOf": [json_object, {"type": "integer"}]},
                    },
                },
                parameters=[
                    {
                        "name": "X-AutoAL-Webhook-Secret",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    }
                ],
            )
        },  # fmt: skip
        "/train": {
            "post": _route(
                "Label Studio's older training call: queues a round that always runs",
                {"201": {"description": "queued or coalesced", **status}},
                (400, 404, 409, 413, 422, *auth),
                {
                    "type": "object",
                    "required": ["project"],
                    "properties": {
                        "project": PROJECT_ID,
                        "label_config": {"type": "string"},
                        "annotations": {"type": "array"},
                    },
                },
                **guarded,
            )
        },  # fmt: skip
        "/metrics": {
            "get": _route(
                "Prometheus text: rounds, timings, errors, queue",
                {
                    "200": {
                        "description": "metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                auth,
                **guarded,
            )
        },  # fmt: skip
        "/versions": {
            "get": _route(
                "Model versions written so far",
                {
                    "200": {
                        "description": "versions",
                        **_json(
                            {
                                "type": "object",
                                "properties": {
                                    "versions": {"type": "array", "items": {"type": "string"}}
                                },
                            }
                        ),
                    }
                },
                (400, *auth),
                parameters=[
                    {"name": "project", "in": "query", "required": False, "schema": PROJECT_ID}
                ],
                **guarded,
            )
        },  # fmt: skip
        "/projects/{project_id}/history": {
            "get": _route(
                "Every round's record: weights, state, top tasks and why, disagreements",
                {"200": {"description": "the history", **_json(json_object)}},
                (400, 404, *auth),
                parameters=[
                    {"name": "project_id", "in": "path", "required": True, "schema": PROJECT_ID}
                ],
                **guarded,
            )
        },  # fmt: skip
        "/projects/{project_id}/model": {
            "get": _route(
                "The latest round's classifier as one file (model.export.load reads it)",
                {
                    "200": {
                        "description": "the file",
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    }
                },
                (400, 404, *auth),
                parameters=[
                    {"name": "project_id", "in": "path", "required": True, "schema": PROJECT_ID}
                ],
                **guarded,
            )
        },  # fmt: skip
        "/openapi.json": {
            "get": _route(
                "This description", {"200": {"description": "OpenAPI 3", **_json(json_object)}}, ()
            )
        },
        "/projects/{project_id}": {
            "get": _route(
                "The project's page (HTML): learning curve, labels per class, weights, why the top tasks are first",
                {
                    "200": {
                        "description": "the page",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
                (400, 404, *auth),
                parameters=[
                    {"name": "project_id", "in": "path", "required": True, "schema": PROJECT_ID}
                ],
                **guarded,
            )
        },  # fmt: skip
        "/projects/{project_id}/tasks/{task_id}/thumbnail": {
            "get": _route(
                "A small PNG of an image task",
                {
                    "200": {
                        "description": "the thumbnail",
                        "content": {
                            "image/png": {"schema": {"type": "string", "format": "binary"}}
                        },
                    }
                },
                (400, 404, *auth),
                parameters=[
                    {"name": "project_id", "in": "path", "required": True, "schema": PROJECT_ID},
                    {
                        "name": "task_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 1},
                    },
                ],
                **guarded,
            )
        },  # fmt: skip
        "/api/projects": {
            "get": _route(
                "The projects this backend tracks, with their status",
                {"200": {"description": "the list", **_json(json_object)}},
                auth,
                **guarded,
            )
        },
        "/api/projects/{project_id}": {
            "get": _route(
                "Everything the project page shows, as JSON",
                {"200": {"description": "the overview", **_json(json_object)}},
                (400, 404, *auth),
                parameters=[
                    {"name": "project_id", "in": "path", "required": True, "schema": PROJECT_ID}
                ],
                **guarded,
            )
        },  # fmt: skip
        "/api/projects/{project_id}/{part}": {
            "get": _route(
                "One part of the overview: status, curve, labels, weights, top, timings or disagreements",
                {"200": {"description": "the part", **_json({})}},
                (400, 404, *auth),
                parameters=[
                    {"name": "project_id", "in": "path", "required": True, "schema": PROJECT_ID},
                    {
                        "name": "part",
                        "in": "path",
                        "required": True,
                        "schema": {
                            "type": "string",
                            "enum": [
                                "status",
                                "curve",
                                "labels",
                                "weights",
                                "top",
                                "timings",
                                "disagreements",
                            ],
                        },
                    },
                ],
                **guarded,
            )
        },  # fmt: skip
    }
    spec: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "AutoAL backend", "version": "0.2.0",
                 "description": "A Label Studio ML backend with automated active learning."},
        "paths": paths,
        "components": {"schemas": {"Error": {"type": "object", "required": ["error"],
                                             "properties": {"error": {"type": "string"}}}}},
    }  # fmt: skip
    if basic_auth:
        spec["components"]["securitySchemes"] = {"basic": {"type": "http", "scheme": "basic"}}
    return spec
