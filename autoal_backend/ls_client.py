"""The few Label Studio REST calls the loop makes, over plain ``requests``.

Auth: a legacy token is sent as ``Authorization: Token ...``; a Personal Access Token (a JWT
refresh token) is exchanged at ``POST /api/token/refresh`` for an access token sent as
``Bearer``, refreshed again when Label Studio answers 401. The key never reaches a log.
"""

import json
import logging
import threading
import time
from collections.abc import Iterable

import requests

log = logging.getLogger(__name__)

TIMEOUT_S = 60
# Connecting never takes long on a working network; a Label Studio that is down must fail fast.
CONNECT_TIMEOUT_S = 5
IMPORT_BATCH = 1000
TASK_PAGE = 5000
IDEMPOTENT = {"GET", "PATCH", "DELETE"}
RETRIES = 2
RETRY_DELAY_S = 0.5


class LabelStudioError(RuntimeError):
    """A Label Studio call failed; the message has the call and status, never the key."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LabelStudioUnavailable(LabelStudioError):
    """Label Studio did not answer (connection refused or reset, a timeout, a 502/503/504):
    an outage to ride out and retry, not a bug of the round."""


class ProjectNotFound(LabelStudioError):
    """Label Studio answers 404 (or 403) for the project: it does not exist for our token."""


def is_jwt(key: str) -> bool:
    """Personal Access Tokens are JWTs: three base64url parts, the header starting 'eyJ'."""
    return key.startswith("eyJ") and key.count(".") == 2


class LabelStudioClient:
    """Label Studio at ``url`` with ``api_key`` (legacy token or PAT)."""

    def __init__(self, url: str, api_key: str, session: requests.Session | None = None) -> None:
        if not url:
            raise LabelStudioError("LABEL_STUDIO_URL is not set: cannot reach Label Studio")
        if not api_key:
            raise LabelStudioError("LABEL_STUDIO_API_KEY is not set: cannot reach Label Studio")
        self.url = url.rstrip("/")
        self._api_key = api_key
        self._access: str | None = None
        self._lock = threading.Lock()
        self.session = session or requests.Session()

    def __repr__(self) -> str:
        return f"LabelStudioClient({self.url!r})"

    @property
    def api_key(self) -> str:
        """The key itself, for workers that fetch Label Studio's files on their own (Ray);
        never logged."""
        return self._api_key

    # --- auth ---------------------------------------------------------------------------
    def _send(self, method: str, path: str, **kwargs) -> requests.Response:
        """One HTTP exchange; connection errors and timeouts become LabelStudioUnavailable."""
        try:
            return self.session.request(method, self.url + path, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise LabelStudioUnavailable(
                f"{method} {path}: Label Studio at {self.url} did not answer ({type(exc).__name__})"
            ) from None

    def _refresh_access(self) -> str:
        response = self._send(
            "POST", "/api/token/refresh", json={"refresh": self._api_key},
            timeout=(CONNECT_TIMEOUT_S, TIMEOUT_S),
        )  # fmt: skip
        if response.status_code != 200:
            raise LabelStudioError(
                f"POST /api/token/refresh: HTTP {response.status_code}; is LABEL_STUDIO_API_KEY "
                "a valid Personal Access Token of this Label Studio?"
            )
        access = response.json().get("access")
        if not isinstance(access, str):
            raise LabelStudioError("POST /api/token/refresh: no 'access' token in the reply")
        return access

    def auth_headers(self, refresh: bool = False) -> dict[str, str]:
        if not is_jwt(self._api_key):
            return {"Authorization": f"Token {self._api_key}"}
        with self._lock:
            if self._access is None or refresh:
                self._access = self._refresh_access()
            return {"Authorization": f"Bearer {self._access}"}

    def headers_for(self, url: str) -> dict[str, str]:
        """Auth headers for a file URL: only for Label Studio's own files, never for a
        third-party host."""
        return self.auth_headers() if url.startswith(self.url + "/") else {}

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        """``method`` on ``path``; one retry with a fresh access token on 401 (PATs expire).

        Idempotent calls (GET, PATCH, DELETE) are retried on 5xx: Label Studio on SQLite
        answers 500 "database is locked" when writes collide (seen on 1.23.2 while
        annotators submit). POSTs are not retried: a repeated import would duplicate.
        """
        timeout = kwargs.pop("timeout", TIMEOUT_S)
        kwargs["timeout"] = (CONNECT_TIMEOUT_S, timeout)
        attempts = 1 + (RETRIES if method in IDEMPOTENT else 0)
        for attempt in range(attempts):
            response = self._send(method, path, headers=self.auth_headers(), **kwargs)
            if response.status_code == 401 and is_jwt(self._api_key):
                response = self._send(
                    method, path, headers=self.auth_headers(refresh=True), **kwargs
                )
            if response.status_code < 500 or attempt == attempts - 1:
                break
            time.sleep(RETRY_DELAY_S * (attempt + 1))
        if response.status_code >= 400:
            body = response.text[:300].replace("\n", " ")
            message = f"{method} {path}: HTTP {response.status_code}: {body}"
            if response.status_code in (502, 503, 504):
                raise LabelStudioUnavailable(message, response.status_code)
            raise LabelStudioError(message, response.status_code)
        return response

    # --- calls --------------------------------------------------------------------------
    def get_project(self, project_id: int) -> dict:
        """The project as Label Studio has it (label config, model_version, counts);
        ProjectNotFound when our token cannot see it."""
        try:
            return self.request("GET", f"/api/projects/{project_id}/").json()
        except LabelStudioError as exc:
            if exc.status in (403, 404):
                raise ProjectNotFound(
                    f"project {project_id} is not in Label Studio at {self.url} for our token",
                    exc.status,
                ) from None
            raise

    def list_task_data(
        self, project_id: int, page_size: int = TASK_PAGE, after_id: int | None = None
    ) -> list[dict]:
        """[{id, data}] of every task (or only those with an id above ``after_id``: task ids
        only grow, so that is exactly the tasks created since), in pages. Asking only for
        ``id,data`` keeps Label Studio from serialising annotations, predictions and counters
        per task: measured on 1.23.2 with 10k tasks, 4.3 s against 18.7 s
        (``fields=task_only``) and 35 s for a full JSON export; the ``after_id`` filter
        answers in 0.07 s."""
        params: dict[str, object] = {
            "project": project_id,
            "fields": "task_only",
            "include": "id,data",
            "page_size": page_size,
        }
        if after_id is not None:
            params["query"] = json.dumps(
                {
                    "filters": {
                        "conjunction": "and",
                        "items": [
                            {
                                "filter": "filter:tasks:id",
                                "operator": "greater",
                                "type": "Number",
                                "value": int(after_id),
                            }
                        ],
                    }
                }
            )
        tasks: list[dict] = []
        page = 1
        while True:
            reply = self.request("GET", "/api/tasks/", params={**params, "page": page}).json()
            batch = reply.get("tasks", []) if isinstance(reply, dict) else reply
            if not isinstance(batch, list):
                raise LabelStudioError(
                    f"GET /api/tasks/: expected a task list, got {type(batch).__name__}"
                )
            tasks += batch
            total = reply.get("total") if isinstance(reply, dict) else None
            if len(batch) < page_size or (isinstance(total, int) and len(tasks) >= total):
                return tasks
            page += 1

    def count_tasks(self, project_id: int) -> int:
        """How many tasks the project has (one tiny page; Label Studio returns the total)."""
        reply = self.request(
            "GET",
            "/api/tasks/",
            params={
                "project": project_id,
                "fields": "task_only",
                "include": "id",
                "page": 1,
                "page_size": 1,
            },
        ).json()
        total = reply.get("total") if isinstance(reply, dict) else None
        if not isinstance(total, int):
            raise LabelStudioError("GET /api/tasks/: the reply has no integer 'total'")
        return total

    def export_annotated(self, project_id: int) -> list[dict]:
        """The tasks that have at least one annotation, with all their annotations (JSON
        export without ``download_all_tasks``): grows with the labels, not with the pool."""
        response = self.request(
            "GET",
            f"/api/projects/{project_id}/export",
            params={"exportType": "JSON", "download_all_tasks": "false"},
            timeout=max(TIMEOUT_S, 300),
        )
        tasks = response.json()
        if not isinstance(tasks, list):
            raise LabelStudioError(
                f"GET /api/projects/{project_id}/export: expected a list of tasks, got "
                f"{type(tasks).__name__}"
            )
        return tasks

    def sync_tasks(
        self,
        project_id: int,
        page_size: int = TASK_PAGE,
        known: dict[int, dict] | None = None,
    ) -> tuple[list[dict], bool]:
        """Every task as {id, data, annotations}, and whether the task list was read in full.

        ``known`` ({id: data} from the previous sync) makes it incremental: only tasks
        created since are listed, and a task count tells whether any was deleted (then the
        list is read in full). Annotations always come fresh from the annotated-only export.
        """
        data: dict[int, dict] | None = None
        if known:
            fresh = self.list_task_data(project_id, page_size, after_id=max(known))
            merged = dict(known)
            merged.update(
                {t["id"]: t.get("data") or {} for t in fresh if isinstance(t, dict) and "id" in t}
            )
            if len(merged) == self.count_tasks(project_id):
                data = merged
        full = data is None
        if data is None:
            data = {
                t["id"]: t.get("data") or {}
                for t in self.list_task_data(project_id, page_size)
                if isinstance(t, dict) and "id" in t
            }
        tasks = {i: {"id": i, "data": d, "annotations": []} for i, d in data.items()}
        for annotated in self.export_annotated(project_id):
            if isinstance(annotated, dict) and annotated.get("id") in tasks:
                tasks[annotated["id"]]["annotations"] = annotated.get("annotations") or []
        return list(tasks.values()), full

    def import_predictions(self, project_id: int, predictions: list[dict]) -> int:
        """Bulk-create ``predictions`` ([{task, result, score, model_version}]); returns how
        many Label Studio created."""
        created = 0
        for start in range(0, len(predictions), IMPORT_BATCH):
            batch = predictions[start : start + IMPORT_BATCH]
            reply = self.request(
                "POST", f"/api/projects/{project_id}/import/predictions", json=batch
            ).json()
            created += (
                int(reply.get("created", len(batch))) if isinstance(reply, dict) else len(batch)
            )
        return created

    def update_project(self, project_id: int, **fields: object) -> dict:
        return self.request("PATCH", f"/api/projects/{project_id}/", json=fields).json()

    def model_versions(self, project_id: int) -> dict[str, int]:
        """{model_version: number of predictions} stored in the project."""
        reply = self.request("GET", f"/api/projects/{project_id}/model-versions/").json()
        return reply if isinstance(reply, dict) else {}

    def delete_model_version(self, project_id: int, model_version: str) -> int:
        """Delete every prediction of ``model_version`` in one call (the project's
        model-versions endpoint: one DELETE, server-side bulk delete); returns the count."""
        reply = self.request(
            "DELETE",
            f"/api/projects/{project_id}/model-versions/",
            json={"model_version": model_version},
        ).json()
        # The reply is the count, as a number or wrapped in an object depending on version.
        if isinstance(reply, int):
            return reply
        if isinstance(reply, dict):
            return sum(v for v in reply.values() if isinstance(v, int))
        return 0

    def delete_versions(self, project_id: int, versions: Iterable[str]) -> int:
        return sum(self.delete_model_version(project_id, v) for v in versions)
