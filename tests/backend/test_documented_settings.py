"""The settings page documents every setting the backend reads, and nothing else; every value
it documents starts the server and runs a round; the README's short table agrees with it.

docs/settings.md has the full table; the README lists the most used settings. The values are
read from the page's table itself (every backticked value in a row's default and meaning
columns), so a documented value the server rejects fails here: the bug of
``AUTOAL_IMAGE_ENCODER=mobilenet_v2@image_size=224``, documented and refused at start. Each
value is set in the environment, the settings are read as ``_wsgi.py`` reads them, the app is
built, Label Studio (the in-process fake) calls ``/setup`` and the worker runs the round with
the real encoders.
"""

import base64
import re
from pathlib import Path

import pytest
import torch

from autoal_backend.app import create_app
from autoal_backend.service import Backend
from autoal_backend.settings import PROJECT_SETTINGS, Settings
from model.strategies import strategy_names
from tests.backend.fakes import (
    BOX_CONFIG,
    IMAGE_CONFIG,
    LS_URL,
    NER_CONFIG,
    PLACES,
    TEXT_CONFIG,
    TOKEN,
    FakeLabelStudio,
    box_annotation,
    png_bytes,
    scene_png,
    span_annotation,
)

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_PAGE = ROOT / "docs" / "settings.md"
README = ROOT / "README.md"
# Settings whose every documented value must run a round (the others are covered elsewhere:
# auth, URLs and directories have no list of values).
CHECKED = (
    "AUTOAL_STRATEGY",
    "AUTOAL_IMAGE_ENCODER",
    "AUTOAL_TEXT_ENCODER",
    "AUTOAL_PUSH_WINDOW",
    "AUTOAL_SET_SAMPLING",
    "AUTOAL_MIN_LABELS",
    "AUTOAL_SEED",
    "AUTOAL_SHORTLIST",
    "DEVICE",
    "LOG_LEVEL",
)


def settings_rows(path: Path) -> list[dict[str, str]]:
    """The rows of every table in ``path`` whose header has a ``variable`` column, as
    {column name: cell}."""
    rows: list[dict[str, str]] = []
    header: list[str] = []
    for line in path.read_text().splitlines():
        if not line.startswith("|"):
            header = []
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not header:
            header = cells
        elif set(line) <= set("|-: "):
            continue  # the separator under the header
        elif "variable" in header and len(cells) == len(header):
            rows.append(dict(zip(header, cells, strict=True)))
    return rows


def variables(row: dict[str, str]) -> list[str]:
    """The environment variables a row documents (``BASIC_AUTH_USER``, ``BASIC_AUTH_PASS``)."""
    return re.findall(r"`([A-Z][A-Z0-9_]+)`", row["variable"])


def values(row: dict[str, str], variable: str) -> set[str]:
    """Every backticked value in a row's default and meaning columns. Placeholders
    (``<name>``) and variables' names are not values."""
    found = set()
    for column in ("default", "meaning"):
        for value in re.findall(r"`([^`]+)`", row.get(column, "")):
            if "<" in value or value.startswith(("AUTOAL_", "LABEL_STUDIO")) or value == variable:
                continue
            found.add(value)
    return found


def documented_values(path: Path = SETTINGS_PAGE) -> list[tuple[str, str]]:
    """(variable, value) for every value documented for the ``CHECKED`` settings."""
    pairs = set()
    for row in settings_rows(path):
        for variable in set(variables(row)) & set(CHECKED):
            pairs.update((variable, value) for value in values(row, variable))
    return sorted(pairs)


class _ReadRecorder(dict):
    """An empty environment that remembers every name the settings ask it for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return super().get(key, default)


def variables_the_backend_reads() -> set[str]:
    env = _ReadRecorder()
    Settings.from_env(env)
    return env.asked


VALUES = documented_values()


def test_the_settings_page_documents_every_setting_and_nothing_else():
    documented = [v for row in settings_rows(SETTINGS_PAGE) for v in variables(row)]
    read = variables_the_backend_reads()
    assert len(documented) == len(set(documented)), "a setting documented twice"
    assert set(documented) - read == set(), "documented, but the backend never reads them"
    assert read - set(documented) == set(), "read by the backend, but not on docs/settings.md"


def test_every_documented_flag_exists():
    source = (ROOT / "_wsgi.py").read_text()
    flags = set(re.findall(r'add_argument\(\s*"(--[\w-]+)"', source))
    documented = {
        flag
        for row in settings_rows(SETTINGS_PAGE)
        for flag in re.findall(r"`(--[\w-]+)`", row["flag"])
    }
    assert documented == flags


def test_the_per_project_list_names_exactly_the_per_project_settings():
    text = SETTINGS_PAGE.read_text()
    paragraph = text[text.index("Per project:") :].split("\n\n")[0]
    example = r"`\{[^`]*\}`"  # the JSON example names some of them too
    named = set(re.findall(r"`(AUTOAL_[A-Z_]+)`", re.sub(example, "", paragraph)))
    assert named == set(PROJECT_SETTINGS)


def test_the_readme_agrees_with_the_settings_page():
    page = {v: row for row in settings_rows(SETTINGS_PAGE) for v in variables(row)}
    readme = settings_rows(README)
    assert len(readme) >= 8, "the README's settings table is gone"
    documented = set(VALUES)
    for row in readme:
        for variable in variables(row):
            assert variable in page, f"{variable}: in the README, not on docs/settings.md"
            assert row["default"] == page[variable]["default"], variable
            if variable in CHECKED:
                shown = {(variable, value) for value in values(row, variable)}
                assert shown <= documented, shown - documented


def test_the_settings_page_documents_values_for_every_checked_setting():
    documented = {variable for variable, _ in VALUES}
    assert documented == set(CHECKED), set(CHECKED) - documented
    assert ("AUTOAL_IMAGE_ENCODER", "mobilenet_v2@image_size=224") in VALUES


def project(ls: FakeLabelStudio, modality: str) -> int:
    """A small project of the modality: 16 labeled tasks of two kinds, 24 unlabeled."""
    if modality == "spans":
        ls.add_project(9, NER_CONFIG)
        for i in range(40):
            person, place = ("Anna", "Bob", "Chen")[i % 3], PLACES[i % len(PLACES)]
            text = f"yesterday {person} flew to {place} again, take {i}"
            task = ls.add_task(9, 900 + i, {"text": text})
            if i < 16:
                task["annotations"].append(
                    span_annotation(i + 1, text, [(person, "person"), (place, "place")])
                )
        return 9
    if modality == "boxes":
        ls.add_project(5, BOX_CONFIG)
        for i in range(40):
            objects = [(i % 4, (i // 4) % 4, "red" if i % 2 else "blue")]
            uri = "data:image/png;base64," + base64.b64encode(scene_png(objects)).decode()
            task = ls.add_task(5, 500 + i, {"picture": uri})
            if i < 16:
                task["annotations"].append(box_annotation(i + 1, objects))
        return 5
    if modality == "text":
        ls.add_project(7, TEXT_CONFIG)
        for i in range(40):
            positive = i % 2 == 0
            text = ("a lovely warm story, " if positive else "a dull cold mess, ") + f"take {i}"
            choices = (["pos"] if positive else ["neg"]) if i < 16 else None
            ls.add_task(7, 700 + i, {"text": text}, choices)
        return 7
    ls.add_project(8, IMAGE_CONFIG)
    for i in range(40):
        colour = [(200, 30, 30), (30, 200, 30), (30, 30, 200)][i % 3]
        uri = "data:image/png;base64," + base64.b64encode(png_bytes(colour, size=16)).decode()
        choices = [["red"], ["green"], ["blue"]][i % 3] if i < 16 else None
        ls.add_task(8, 800 + i, {"image": uri}, choices, from_name="colour", to_name="img")
    return 8


@pytest.mark.slow
@pytest.mark.parametrize(("variable", "value"), VALUES, ids=[f"{v}={x}" for v, x in VALUES])
def test_a_documented_value_starts_the_server_and_runs_a_round(variable, value, tmp_path):
    if value.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    ls = FakeLabelStudio()
    own_kind = [
        kind
        for kind in ("spans", "boxes")
        if variable == "AUTOAL_STRATEGY"
        and value in set(strategy_names(kind)) - set(strategy_names())
    ]
    modality = (
        "image" if variable == "AUTOAL_IMAGE_ENCODER" else own_kind[0] if own_kind else "text"
    )
    project_id = project(ls, modality)
    env = {
        "LABEL_STUDIO_URL": LS_URL,
        "LABEL_STUDIO_API_KEY": TOKEN,
        "MODEL_DIR": str(tmp_path / "models"),
        "AUTOAL_MIN_LABELS": "4",
        variable: value,
    }
    settings = Settings.from_env(env)  # as _wsgi.py reads them: a refused value fails here
    backend = Backend(settings, session=ls.session())
    client = create_app(settings, backend).test_client()
    config = {"image": IMAGE_CONFIG, "spans": NER_CONFIG, "boxes": BOX_CONFIG}.get(
        modality, TEXT_CONFIG
    )
    reply = client.post("/setup", json={"project": f"{project_id}.1", "schema": config})
    assert reply.status_code == 200, reply.get_json()
    try:
        assert backend.worker.wait_idle(300), "the round did not finish"
    finally:
        backend.worker.stop()
    history = client.get(f"/projects/{project_id}/history").get_json()["rounds"]
    assert len(history) == 1, "no round ran"
    entry = history[0]
    # auto: no labels have arrived between rounds yet, so the largest window.
    window = settings.push_window or 100
    assert entry["pushed"] == min(window, 24) and entry["push_window"] == window
    assert entry["cold_start"] is (settings.min_labels > 16)
    if variable == "AUTOAL_STRATEGY":
        assert entry["strategy"] == value
    metrics = client.get("/metrics").get_data(as_text=True)
    assert not [line for line in metrics.splitlines() if line.startswith("autoal_errors_total{")]
