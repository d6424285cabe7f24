"""Schemathesis against the backend's own OpenAPI description (``/openapi.json``): generated
requests for every route, valid and invalid, never get a 5xx, and every error is JSON that
says what is wrong. Runs on the app in-process (WSGI), with the fake Label Studio behind it."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from autoal_backend.app import create_app
from tests.backend.conftest import make_backend, make_settings, text_project
from tests.backend.fakes import TEXT_CONFIG, FakeLabelStudio


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    ls = FakeLabelStudio()
    text_project(ls, 7, labeled=12, unlabeled=20)
    backend = make_backend(make_settings(tmp_path_factory.mktemp("fuzz")), ls)
    app = create_app(backend.settings, backend)
    client = app.test_client()
    assert client.post("/setup", json={"project": "7.1", "schema": TEXT_CONFIG}).status_code == 200
    assert backend.worker.wait_idle(120)  # project 7 has a round, a ranking and a model
    yield app
    backend.worker.stop()


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


def operations(schema) -> list:
    return [result.ok() for result in schema.get_all_operations()]


def test_no_generated_request_gets_a_server_error(api_schema):
    # Each operation's hypothesis strategy, driven here (schemathesis' own pytest plugin does
    # not load under pytest 9).
    checked = []
    for operation in operations(api_schema):

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=100, deadline=None, suppress_health_check=list(HealthCheck)
        )
        def check(case):
            response = case.call()
            assert response.status_code < 500, (
                case.method,
                case.path,
                case.body,
                response.text[:300],
            )
            if response.status_code >= 400:
                body = response.json()
                assert isinstance(body.get("error"), str) and body["error"], body

        check()
        checked.append(f"{operation.method.upper()} {operation.path}")
    # Every route but the description itself (which schemathesis leaves out) was fuzzed.
    spec = api_schema.raw_schema["paths"]
    expected = {f"{m.upper()} {p}" for p, ops in spec.items() for m in ops if p != "/openapi.json"}
    assert set(checked) == expected


def test_the_description_lists_every_route(app):
    paths = app.test_client().get("/openapi.json").get_json()["paths"]
    import re

    routes = {
        re.sub(r"<(\w+)>", r"{\1}", rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
    }
    assert routes == set(paths)
