"""The Flask app: Label Studio's ML-backend protocol plus /metrics and the round history."""

import hmac
import io
import logging

from flask import Flask, Response, jsonify, request, send_file
from werkzeug.exceptions import HTTPException

from autoal_backend import overview, pages
from autoal_backend.errors import RequestError, parse_project_id
from autoal_backend.openapi import openapi_spec
from autoal_backend.protocol import WEBHOOK_SECRET_HEADER
from autoal_backend.service import Backend
from autoal_backend.settings import Settings

log = logging.getLogger(__name__)

# Label Studio's webhooks carry no auth; health checks must answer without it.
OPEN_ROUTES = {"/webhook", "/health", "/openapi.json"}


def create_app(settings: Settings, backend: Backend | None = None) -> Flask:
    """The app for ``settings``. Cheap: no model, encoder or thread is started here; the
    worker thread starts with the first round, encoders load in it."""
    app = Flask("autoal_backend")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    # Larger bodies are refused (413) before they are read: memory stays bounded.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_mb * 1024 * 1024
    if backend is None:
        backend = Backend(settings)
        backend.start()  # owed rounds resume; the reconciler catches up with Label Studio
    app.extensions["autoal"] = backend

    def body() -> dict:
        try:
            payload = request.get_json(silent=True)
        except RecursionError:
            raise RequestError("request body is JSON nested too deeply") from None
        if not isinstance(payload, dict):
            raise RequestError("request body must be a JSON object")
        return payload

    @app.before_request
    def check_auth():
        if not settings.basic_auth or request.path in OPEN_ROUTES:
            return None
        auth = request.authorization
        ok = (
            auth is not None
            and auth.type == "basic"
            and hmac.compare_digest(str(auth.username or ""), settings.basic_auth_user)
            and hmac.compare_digest(str(auth.password or ""), settings.basic_auth_pass)
        )
        if ok:
            return None
        response = jsonify(error="basic auth required: wrong or missing credentials")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Basic realm="autoal-backend"'
        return response

    @app.errorhandler(RequestError)
    def request_error(exc: RequestError):
        if request.path == "/setup":
            # Label Studio shows only our status code to its user: the reason goes to the log.
            log.warning("/setup refused (%s): %s", exc.status, exc)
        return jsonify(error=str(exc)), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return jsonify(error=f"{exc.name}: {exc.description}"), exc.code or 500

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        # Logged with its traceback here; the client only learns that it failed.
        log.exception("unhandled error on %s %s", request.method, request.path)
        backend.metrics.error("request")
        return jsonify(error=f"internal error ({type(exc).__name__}); see the backend log"), 500

    def wants_html() -> bool:
        accept = request.accept_mimetypes
        return accept.accept_html and accept["text/html"] > accept["application/json"]

    @app.get("/health")
    def health():
        return jsonify(backend.health())

    @app.get("/")
    def index():
        # A browser gets the projects page; Label Studio and scripts get the health JSON.
        if wants_html():
            return Response(
                pages.projects_page(overview.project_rows(backend)), mimetype="text/html"
            )
        return jsonify(backend.health())

    @app.get("/projects/<project_id>")
    def project_page(project_id: str):
        overview = overview_of(project_id)
        return Response(pages.project_page(overview), mimetype="text/html")

    @app.get("/projects/<project_id>/tasks/<task_id>/thumbnail")
    def thumbnail(project_id: str, task_id: str):
        data = backend.thumbnail(
            parse_project_id(project_id, "project id"), parse_project_id(task_id, "task id")
        )
        return Response(data, mimetype="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/projects")
    def api_projects():
        return jsonify(projects=overview.project_rows(backend))

    def overview_of(project_id: str) -> dict:
        return overview.project_overview(backend, parse_project_id(project_id, "project id"))

    @app.get("/api/projects/<project_id>")
    def api_project(project_id: str):
        return jsonify(overview_of(project_id))

    @app.get("/api/projects/<project_id>/<part>")
    def api_project_part(project_id: str, part: str):
        data = overview_of(project_id)
        parts = {
            "status": data["project"]["status"],
            "curve": data["learning_curve"],
            "labels": data["labels_over_rounds"],
            "weights": data["weights_over_rounds"],
            "top": data["top"],
            "timings": data["timings"],
            "disagreements": data["disagreements"],
        }
        if part not in parts:
            raise RequestError(f"unknown part {part!r}; valid: {', '.join(parts)}", 404)
        return jsonify(parts[part])

    @app.post("/setup")
    def setup():
        return jsonify(backend.setup(body()))

    @app.post("/predict")
    def predict():
        return jsonify(backend.predict(body()))

    @app.post("/webhook")
    def webhook():
        backend.check_webhook_secret(request.headers.get(WEBHOOK_SECRET_HEADER))
        return jsonify(backend.webhook(body())), 201

    @app.post("/train")
    def train():
        return jsonify(backend.train(body())), 201

    @app.get("/openapi.json")
    def openapi():
        return jsonify(openapi_spec(settings.basic_auth))

    @app.get("/metrics")
    def metrics():
        return Response(backend.metrics_text(), mimetype="text/plain; version=0.0.4")

    @app.get("/versions")
    def versions():
        project = request.args.get("project")
        return jsonify(backend.versions(parse_project_id(project) if project else None))

    @app.get("/projects/<project_id>/history")
    def history(project_id: str):
        return jsonify(backend.history(parse_project_id(project_id, "project id")))

    @app.get("/projects/<project_id>/model")
    def model(project_id: str):
        path, name = backend.model_file(parse_project_id(project_id, "project id"))
        # Read at once: the next round replaces the file atomically, never under a reader.
        return send_file(
            io.BytesIO(path.read_bytes()),
            mimetype="application/octet-stream",
            as_attachment=True,
            download_name=name,
        )

    return app
