"""In-process fakes for the backend's unit tests: a tiny Label Studio (the few REST calls the
backend makes, served by Flask and reached through a requests adapter, so the real client code
runs) and a deterministic encoder."""

import hashlib
import io
import json
import threading

import numpy as np
import requests
import torch
from flask import Flask, abort, jsonify, request
from PIL import Image

LS_URL = "http://fake-ls.test"
TOKEN = "legacy-token-123"
TEXT_CONFIG = (
    '<View><Text name="text" value="$text"/>'
    '<Choices name="sentiment" toName="text" choice="single">'
    '<Choice value="pos"/><Choice value="neg"/></Choices></View>'
)
IMAGE_CONFIG = (
    '<View><Image name="img" value="$image"/>'
    '<Choices name="colour" toName="img" choice="multiple">'
    '<Choice value="red"/><Choice value="green"/><Choice value="blue"/></Choices></View>'
)


class FakeEncoder:
    """Text: counts of 'a', 'b', 'c', 'd' and the length (5-d). Images: mean RGB (3-d).
    Deterministic, so tests know which tasks are alike."""

    def __init__(self, name: str = "fake-text", modality: str = "text") -> None:
        self.name = name
        self.modality = modality
        self.dim = 5 if modality == "text" else 3
        self.calls: list[int] = []

    def encode(self, items: list) -> torch.Tensor:
        self.calls.append(len(items))
        if self.modality == "text":
            rows = [[s.count(ch) for ch in "abcd"] + [len(s)] for s in items]
        else:
            rows = [
                torch.from_numpy(np.asarray(im, dtype=np.float32)).mean(dim=(0, 1)).tolist()
                for im in items
            ]
        return torch.tensor(rows, dtype=torch.float32)


def png_bytes(colour: tuple[int, int, int], size: int = 4) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


class FakeLabelStudio:
    """Projects with tasks and annotations in memory; records every call it serves."""

    def __init__(self, token: str = TOKEN, jwt_refresh: str | None = None) -> None:
        self.token = token
        self.jwt_refresh = jwt_refresh
        self.access_tokens: list[str] = []
        self.projects: dict[int, dict] = {}
        self.tasks: dict[int, list[dict]] = {}
        self.predictions: list[dict] = []
        self.files: dict[str, bytes] = {}
        self.calls: list[tuple[str, str]] = []
        self.call_args: list[dict[str, list[str]]] = []  # each call's query, as calls
        self.fail_import = False
        self.locked_replies = 0  # answer this many requests with 500 "database is locked"
        self.down = False  # every request fails to connect, as when Label Studio is stopped
        self.delay_s = 0.0  # every request takes this long (a slow Label Studio)
        # {task id: (total, cancelled)}: counters Label Studio failed to update for that task.
        self.stale_counters: dict[int, tuple[int, int]] = {}
        self._lock = threading.Lock()
        self.app = self._make_app()

    # --- set-up helpers -------------------------------------------------------------------
    def add_project(self, project_id: int, label_config: str) -> None:
        self.projects[project_id] = {
            "id": project_id,
            "label_config": label_config,
            "model_version": "",
            "sampling": "Sequential sampling",
        }
        self.tasks[project_id] = []

    def add_task(
        self,
        project_id: int,
        task_id: int,
        data: dict,
        choices: list[str] | None = None,
        from_name: str = "sentiment",
        to_name: str = "text",
    ) -> dict:
        task = {"id": task_id, "data": data, "annotations": [], "predictions": []}
        self.tasks[project_id].append(task)
        if choices is not None:
            self.annotate(project_id, task_id, choices, from_name, to_name)
        return task

    def annotate(
        self,
        project_id: int,
        task_id: int,
        choices: list[str],
        from_name: str = "sentiment",
        to_name: str = "text",
        cancelled: bool = False,
    ) -> None:
        task = next(t for t in self.tasks[project_id] if t["id"] == task_id)
        number = sum(len(t["annotations"]) for ts in self.tasks.values() for t in ts) + 1
        task["annotations"].append(
            {
                "id": number,
                "was_cancelled": cancelled,
                "updated_at": f"2026-01-01T00:00:{number:02d}Z",
                "result": [
                    {
                        "from_name": from_name,
                        "to_name": to_name,
                        "type": "choices",
                        "value": {"choices": choices},
                    }
                ],
            }
        )

    def stamp(self, task: dict) -> dict:
        """The task's ``updated_at`` and annotation counters as Label Studio lists them. Label
        Studio sets ``updated_at`` whenever an annotation is saved: here a digest of the
        annotations stands for it, unless a test set the task's own ``updated_at`` (a write
        that Label Studio does not stamp, such as the Labels Manager's bulk rename)."""
        annotations = task["annotations"]
        updated = (
            task.get("updated_at")
            or hashlib.sha1(json.dumps(annotations, sort_keys=True).encode()).hexdigest()
        )
        total, cancelled = self.stale_counters.get(task["id"], (
            sum(not a.get("was_cancelled") for a in annotations),
            sum(bool(a.get("was_cancelled")) for a in annotations),
        ))  # fmt: skip
        return {
            "updated_at": updated,
            "total_annotations": total,
            "cancelled_annotations": cancelled,
        }

    def delete_task(self, project_id: int, task_id: int) -> None:
        self.tasks[project_id] = [t for t in self.tasks[project_id] if t["id"] != task_id]

    def versions(self, project_id: int) -> dict[str, int]:
        counts: dict[str, int] = {}
        for p in self.predictions:
            if p["project"] == project_id:
                counts[p["model_version"]] = counts.get(p["model_version"], 0) + 1
        return counts

    def session(self) -> requests.Session:
        session = requests.Session()
        session.mount(LS_URL, FlaskAdapter(self.app, self))
        return session

    # --- the REST API ---------------------------------------------------------------------
    def _make_app(self) -> Flask:
        app = Flask("fake-label-studio")

        @app.before_request
        def record_and_auth():
            self.calls.append((request.method, request.path))
            self.call_args.append(request.args.to_dict(flat=False))
            if self.locked_replies > 0:
                self.locked_replies -= 1
                return jsonify(detail="database is locked"), 500
            if request.path == "/api/token/refresh":
                return None
            header = request.headers.get("Authorization", "")
            if header == f"Token {self.token}":
                return None
            if header.startswith("Bearer ") and header[7:] in self.access_tokens:
                return None
            return jsonify(detail="Authentication credentials were not provided."), 401

        @app.post("/api/token/refresh")
        def refresh():
            if request.get_json().get("refresh") != self.jwt_refresh:
                return jsonify(detail="Token is invalid"), 401
            access = f"access-{len(self.access_tokens)}"
            self.access_tokens.append(access)
            return jsonify(access=access)

        def project_or_404(pid: int) -> dict:
            if pid not in self.projects:
                abort(404)
            return self.projects[pid]

        def only_included(fields: dict) -> dict:
            """Label Studio's ``include``: only the fields named (all when absent)."""
            if "include" not in request.args:
                return fields
            names = request.args["include"].split(",")
            return {k: v for k, v in fields.items() if k in names}

        @app.get("/api/projects/<int:pid>/")
        def get_project(pid: int):
            project = dict(project_or_404(pid))
            annotations = [a for t in self.tasks[pid] for a in t["annotations"]]
            project.update(
                task_number=len(self.tasks[pid]),
                total_annotations_number=sum(not a["was_cancelled"] for a in annotations),
                skipped_annotations_number=sum(bool(a["was_cancelled"]) for a in annotations),
                num_tasks_with_annotations=sum(bool(t["annotations"]) for t in self.tasks[pid]),
            )
            return jsonify(only_included(project))

        @app.patch("/api/projects/<int:pid>/")
        def patch_project(pid: int):
            project = project_or_404(pid)
            fields = request.get_json()
            version = fields.get("model_version")
            if version and version not in self.versions(pid):
                return jsonify(
                    validation_errors={
                        "model_version": [
                            "Model version doesn't exist either as live model or as static predictions."
                        ]
                    }
                ), 400
            project.update(fields)
            return jsonify(only_included({"id": pid, **project}))

        @app.get("/api/projects/<int:pid>/export")
        def export(pid: int):
            project_or_404(pid)
            tasks = self.tasks[pid]
            if request.args.get("download_all_tasks", "false") != "true":
                tasks = [t for t in tasks if t["annotations"]]
            if "ids[]" in request.args:
                ids = {int(i) for i in request.args.getlist("ids[]")}
                tasks = [t for t in tasks if t["id"] in ids]
            rows = [{**t, **self.stamp(t)} for t in tasks]
            return app.response_class(json.dumps(rows), mimetype="application/json")

        @app.get("/api/tasks/")
        def list_tasks():
            pid = int(request.args["project"])
            project_or_404(pid)
            page, size = int(request.args.get("page", 1)), int(request.args.get("page_size", 100))
            tasks = [{**t, **self.stamp(t)} for t in self.tasks[pid]]
            if "query" in request.args:  # the filters the backend uses: columns greater than n
                filters = json.loads(request.args["query"])["filters"]
                tests = []
                for item in filters["items"]:
                    column = item["filter"].removeprefix("filter:tasks:")
                    assert column in ("id", "total_annotations", "cancelled_annotations"), item
                    assert item["operator"] == "greater", item
                    tests.append((column, item["value"]))
                match = any if filters["conjunction"] == "or" else all
                tasks = [t for t in tasks if match(t[c] > v for c, v in tests)]
            chunk = tasks[(page - 1) * size : page * size]
            if page > 1 and not chunk:
                abort(404)  # Label Studio answers 404 past the last page
            include = request.args.get("include", "").split(",")
            rows = [
                {k: v for k, v in t.items() if k in include} if include != [""] else t
                for t in chunk
            ]
            return jsonify(tasks=rows, total=len(tasks))

        @app.post("/api/projects/<int:pid>/import/predictions")
        def import_predictions(pid: int):
            project_or_404(pid)
            if self.fail_import:
                return jsonify(detail="boom"), 500
            items = request.get_json()
            task_ids = {t["id"] for t in self.tasks[pid]}
            for item in items:
                assert item["task"] in task_ids, item
                assert isinstance(item["result"], list)
                self.predictions.append({**item, "project": pid})
            return jsonify(created=len(items))

        @app.get("/api/projects/<int:pid>/model-versions/")
        def list_versions(pid: int):
            project_or_404(pid)
            return jsonify(self.versions(pid))

        @app.delete("/api/projects/<int:pid>/model-versions/")
        def delete_version(pid: int):
            project_or_404(pid)
            version = request.get_json().get("model_version")
            before = len(self.predictions)
            self.predictions = [
                p
                for p in self.predictions
                if not (p["project"] == pid and p["model_version"] == version)
            ]
            return jsonify(before - len(self.predictions))

        @app.get("/data/upload/<path:name>")
        def upload(name: str):
            if name not in self.files:
                abort(404)
            return app.response_class(self.files[name], mimetype="image/png")

        return app


class FlaskAdapter(requests.adapters.BaseAdapter):
    """A requests transport that hands requests to a Flask app's test client."""

    def __init__(self, app: Flask, ls: "FakeLabelStudio | None" = None) -> None:
        super().__init__()
        self.client = app.test_client()
        self.ls = ls

    def send(self, prepared, **kwargs):
        if self.ls is not None:
            if self.ls.down:
                raise requests.ConnectionError("Connection refused (fake Label Studio is down)")
            if self.ls.delay_s:
                import time

                time.sleep(self.ls.delay_s)
        url = requests.utils.urlparse(prepared.url)
        reply = self.client.open(
            url.path,
            method=prepared.method,
            query_string=url.query,
            headers=dict(prepared.headers),
            data=prepared.body,
        )
        response = requests.Response()
        response.status_code = reply.status_code
        response._content = reply.get_data()
        response._content_consumed = True  # iter_content (streamed reads) replays _content
        response.raw = io.BytesIO(response._content)
        response.headers = requests.structures.CaseInsensitiveDict(reply.headers)
        response.url = prepared.url
        response.request = prepared
        return response

    def close(self) -> None:
        pass


NER_CONFIG = (
    '<View><Labels name="ent" toName="text"><Label value="person"/><Label value="place"/></Labels>'
    '<Text name="text" value="$text"/></View>'
)
PLACES = ("Oslo", "Lima", "Kyoto", "Porto")


class FakeTokenEncoder(FakeEncoder):
    """Whitespace tokens; a token's state says whether it is capitalised and whether it is a
    known place (so a tagger can learn person vs place), plus its length. ``encode`` is the
    mean of the states, as MiniLM's sentence vector is the mean of its tokens."""

    def __init__(self, name: str = "fake-tokens") -> None:
        super().__init__(name, "text")

    def encode_tokens(
        self, items: list
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[list[tuple[int, int]]]]:
        self.calls.append(len(items))
        states, offsets = [], []
        for text in items:
            spans, rows, position = [], [], 0
            for word in text.split():
                start = text.index(word, position)
                position = start + len(word)
                spans.append((start, position))
                rows.append(
                    [
                        float(word[:1].isupper()),
                        float(word in PLACES),
                        float(len(word)),
                        1.0,
                        float(word[:1].isupper() and word not in PLACES),
                    ]
                )
            states.append(torch.tensor(rows, dtype=torch.float32).reshape(-1, self.dim))
            offsets.append(spans)
        pooled = torch.stack([s.mean(dim=0) if len(s) else torch.zeros(self.dim) for s in states])
        return pooled, states, offsets

    def encode(self, items: list) -> torch.Tensor:
        return self.encode_tokens(items)[0]


def span_annotation(
    number: int, text: str, spans: list[tuple[str, str]], from_name: str = "ent"
) -> dict:
    """An annotation marking each (word, label) of ``spans`` in ``text`` at its first occurrence."""
    result = []
    for word, label in spans:
        start = text.index(word)
        result.append({"from_name": from_name, "to_name": "text", "type": "labels",
                       "value": {"start": start, "end": start + len(word), "text": word, "labels": [label]}})  # fmt: skip
    return {
        "id": number,
        "was_cancelled": False,
        "updated_at": f"2026-01-01T00:00:{number:02d}Z",
        "result": result,
    }


BOX_CONFIG = (
    '<View><Image name="photo" value="$picture"/>'
    '<RectangleLabels name="objects" toName="photo">'
    '<Label value="red"/><Label value="blue"/></RectangleLabels></View>'
)
BOX_COLOURS = {"red": (230, 20, 20), "blue": (20, 20, 230)}


def scene_png(boxes: list[tuple[int, int, str]], cells: int = 4, cell_px: int = 16,
              width_px: int | None = None) -> bytes:  # fmt: skip
    """A black PNG with a coloured square filling each (column, row) cell of a ``cells`` grid:
    ``boxes`` [(column, row, colour name)]. ``width_px`` stretches it (a non-square image)."""
    side = cells * cell_px
    image = Image.new("RGB", (side, side), (0, 0, 0))
    for col, row, colour in boxes:
        image.paste(
            BOX_COLOURS[colour],
            (col * cell_px, row * cell_px, (col + 1) * cell_px, (row + 1) * cell_px),
        )
    if width_px is not None:
        image = image.resize((width_px, side), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def box_annotation(number: int, boxes: list[tuple[int, int, str]], cells: int = 4,
                   from_name: str = "objects", to_name: str = "photo") -> dict:  # fmt: skip
    """An annotation drawing each (column, row, label) cell of ``scene_png`` as a box."""
    step = 100.0 / cells
    return {
        "id": number,
        "result": [
            {"from_name": from_name, "to_name": to_name, "type": "rectanglelabels",
             "original_width": 64, "original_height": 64,
             "value": {"x": col * step, "y": row * step, "width": step, "height": step, "rotation": 0,
                       "rectanglelabels": [label]}}
            for col, row, label in boxes
        ],
        "was_cancelled": False,
        "created_at": f"2026-01-01T00:00:{number % 60:02d}Z",
    }  # fmt: skip


class FakeMapEncoder(FakeEncoder):
    """Images -> a ``cells`` x ``cells`` map whose cell holds the cell's mean RGB (0..1) and a
    constant 1: a head learns which colour is which object. ``encode`` is the image's mean
    colour. Sizes are the images' own."""

    def __init__(self, name: str = "fake-maps", cells: int = 4) -> None:
        super().__init__(name, "image")
        self.cells = cells
        self.map_shape = (cells, cells, 4)

    def encode_maps(self, items: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.calls.append(len(items))
        maps = []
        for image in items:
            small = image.convert("RGB").resize((self.cells, self.cells), Image.Resampling.BOX)
            rgb = torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0)  # [G, G, 3]
            maps.append(torch.cat((rgb, torch.ones(self.cells, self.cells, 1)), dim=-1))
        stacked = torch.stack(maps) if maps else torch.zeros(0, self.cells, self.cells, 4)
        pooled = stacked[..., :3].mean(dim=(1, 2)) if maps else torch.zeros(0, 3)
        sizes = torch.tensor([list(image.size) for image in items], dtype=torch.long).reshape(-1, 2)
        return pooled, stacked, sizes

    def encode(self, items: list) -> torch.Tensor:
        return self.encode_maps(items)[0]
