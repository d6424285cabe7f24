"""Hostile input: no 5xx, no hang, bounded memory. Huge and deeply nested bodies, 100k tasks in
one /predict, a label config with 10k choices, image URLs that never answer or never end,
decompression bombs, hosts outside AUTOAL_ALLOWED_HOSTS; property tests of the parsers."""

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from autoal_backend import task_data
from autoal_backend.app import create_app
from autoal_backend.errors import RequestError, parse_project_id
from autoal_backend.kinds import parse_label_config
from autoal_backend.label_config import UnsupportedConfigError
from autoal_backend.rounds.sync import view_tasks
from autoal_backend.settings import Settings, SettingsError, parse_project_settings
from autoal_backend.task_data import TaskDataError, decode_image, fetch_bytes
from tests.backend.conftest import make_backend, make_settings, text_project
from tests.backend.fakes import TEXT_CONFIG

TEXT = parse_label_config(TEXT_CONFIG)


@pytest.fixture
def app_client(tmp_path, ls):
    text_project(ls, 7, labeled=12, unlabeled=20)
    backend = make_backend(make_settings(tmp_path, AUTOAL_MAX_BODY_MB=8), ls)
    backend.worker.submit = lambda *args, **kwargs: True  # no rounds: the routes alone
    client = create_app(backend.settings, backend).test_client()
    assert client.post("/setup", json={"project": "7.1", "schema": TEXT_CONFIG}).status_code == 200
    return client


def test_a_body_over_the_limit_is_refused_before_it_is_read(app_client):
    huge = b'{"tasks": [' + b'{"id": 1},' * (1 << 20) + b'{"id": 2}], "project": 7}'  # ~10 MB
    reply = app_client.post("/predict", data=huge, content_type="application/json")
    assert reply.status_code == 413 and "error" in reply.get_json()


def test_deeply_nested_json_is_a_400(app_client):
    deep = "[" * 100_000 + "]" * 100_000
    for path in ("/predict", "/setup", "/webhook", "/train"):
        reply = app_client.post(path, data=deep, content_type="application/json")
        assert reply.status_code == 400 and "nested too deeply" in reply.get_json()["error"], path


def test_one_hundred_thousand_tasks_in_one_predict(app_client):
    tasks = [{"id": 100_000 + i, "data": {"text": "x"}} for i in range(100_000)]
    start = time.perf_counter()
    reply = app_client.post("/predict", json={"project": "7.1", "tasks": tasks})
    assert reply.status_code == 200
    assert len(reply.get_json()["results"]) == 100_000
    assert time.perf_counter() - start < 60


def test_a_label_config_with_ten_thousand_choices(app_client):
    choices = "".join(f'<Choice value="c{i}"/>' for i in range(10_000))
    config = f'<View><Text name="text" value="$text"/><Choices name="c" toName="text">{choices}</Choices></View>'
    reply = app_client.post("/setup", json={"project": "8.1", "schema": config})
    assert reply.status_code == 200
    reply = app_client.post("/predict", json={"project": "8.1", "tasks": [{"id": 1}]})
    assert reply.status_code == 200 and reply.get_json()["results"][0]["result"] == []


class Server:
    """A local HTTP server with misbehaving routes."""

    def __init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path == "/hang":
                    owner.hung.wait(30)  # accept, then never answer
                    return
                if self.path == "/endless":  # a "1 GB image": bytes until told to stop
                    self.send_response(200)
                    self.send_header("Content-Type", "image/png")
                    self.end_headers()
                    chunk = b"\0" * (1 << 16)
                    try:
                        for _ in range(16_384):
                            self.wfile.write(chunk)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return
                if self.path == "/declared-huge":
                    self.send_response(200)
                    self.send_header("Content-Length", str(1 << 30))
                    self.end_headers()
                    return
                if self.path.startswith("/redirect"):
                    self.send_response(302)
                    self.send_header("Location", self.path.split("to=", 1)[1])
                    self.end_headers()
                    return
                body = owner.png
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        buffer = io.BytesIO()
        Image.new("RGB", (4, 4), (9, 8, 7)).save(buffer, format="PNG")
        self.png = buffer.getvalue()
        self.hung = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.hung.set()
        self.httpd.shutdown()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def test_an_image_url_that_never_answers_times_out(server, monkeypatch):
    monkeypatch.setattr(task_data, "READ_TIMEOUT_S", 0.5)
    start = time.perf_counter()
    with pytest.raises(TaskDataError, match="cannot fetch .*Timeout"):
        fetch_bytes(server.url + "/hang")
    assert time.perf_counter() - start < 5


def test_an_endless_image_is_cut_at_the_size_cap(server, monkeypatch):
    monkeypatch.setattr(task_data, "MAX_BYTES", 2 * 1024 * 1024)
    with pytest.raises(TaskDataError, match="larger than 2097152 bytes"):
        fetch_bytes(server.url + "/endless")
    with pytest.raises(TaskDataError, match="1073741824 declared"):
        fetch_bytes(server.url + "/declared-huge")


def test_a_decompression_bomb_is_refused_before_decoding():
    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buffer, format="PNG")  # 100 Mpx in ~12 KB
    assert len(buffer.getvalue()) < 100_000
    with pytest.raises(TaskDataError, match="larger than 40000000 pixels"):
        decode_image(buffer.getvalue())


def test_allowed_hosts_limit_fetches_and_redirects(server):
    ls_url = server.url  # Label Studio's own host is always allowed
    assert fetch_bytes(
        server.url + "/a.png", label_studio_url=ls_url, allowed_hosts=("images.example",)
    )
    with pytest.raises(TaskDataError, match="not Label Studio's nor in AUTOAL_ALLOWED_HOSTS"):
        fetch_bytes(
            "http://localhost:9/x.png", label_studio_url=ls_url, allowed_hosts=("images.example",)
        )
    # A redirect from an allowed host to another one is refused too.
    with pytest.raises(TaskDataError, match="'localhost' is not Label Studio's"):
        fetch_bytes(server.url + "/redirect?to=http://localhost:9/x.png", label_studio_url=ls_url,
                    allowed_hosts=("images.example",))  # fmt: skip
    # Without the setting, any host may be fetched (redirects followed).
    assert fetch_bytes(server.url + f"/redirect?to={server.url}/b.png") == server.png
    with pytest.raises(SettingsError, match="AUTOAL_ALLOWED_HOSTS"):
        Settings.from_env({"AUTOAL_ALLOWED_HOSTS": "http://x/"})
    assert Settings.from_env(
        {"AUTOAL_ALLOWED_HOSTS": "A.example, b.example:8080"}
    ).allowed_hosts == ("a.example", "b.example:8080")


def test_a_data_uri_over_the_cap_is_refused(monkeypatch):
    monkeypatch.setattr(task_data, "MAX_BYTES", 1000)
    uri = "data:image/png;base64," + base64.b64encode(b"\0" * 5000).decode()
    with pytest.raises(TaskDataError, match="larger than 1000 bytes"):
        fetch_bytes(uri)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(value=JSON)
def test_project_ids_parse_or_are_a_4xx(value):
    try:
        assert parse_project_id(value) > 0
    except RequestError as exc:
        assert 400 <= exc.status < 500


@FUZZ
@given(extra=JSON)
def test_project_settings_parse_or_name_the_problem(extra):
    try:
        parse_project_settings(extra, Settings())
    except SettingsError as exc:
        assert str(exc)


@FUZZ
@given(config=st.text(max_size=200) | st.sampled_from([TEXT_CONFIG, TEXT_CONFIG[:40], "<View/>"]))
def test_label_configs_parse_or_say_why(config):
    try:
        parse_label_config(config)
    except UnsupportedConfigError as exc:
        assert str(exc)


@FUZZ
@given(tasks=st.lists(st.dictionaries(st.sampled_from(["id", "data", "annotations"]), JSON, max_size=3), max_size=5),
       annotations=st.lists(JSON, max_size=4))  # fmt: skip
def test_exported_tasks_of_any_shape_never_break_the_round(tasks, annotations):
    shaped = tasks + [{"id": 1, "data": {}, "annotations": annotations}]
    for view in view_tasks(shaped, TEXT):
        assert view.answer is None or view.answer in (["pos"], ["neg"])


@FUZZ
@given(payload=st.dictionaries(st.sampled_from(["action", "project", "tasks", "schema", "label_config",
                                                "extra_params", "annotation"]), JSON, max_size=5),
       path=st.sampled_from(["/webhook", "/predict", "/setup", "/train"]))  # fmt: skip
def test_any_json_body_gets_an_answer_below_500(app_client, payload, path):
    reply = app_client.post(path, data=json.dumps(payload), content_type="application/json")
    assert reply.status_code < 500, (path, payload, reply.get_json())
    assert reply.is_json
