import pytest
import torch

from autoal_backend.service import Backend
from autoal_backend.settings import Settings
from tests.backend.fakes import LS_URL, TEXT_CONFIG, TOKEN, FakeEncoder, FakeLabelStudio

# Tiny pools: one thread is faster than two fighting over a shared machine.
torch.set_num_threads(1)


def text_project(
    ls: FakeLabelStudio, project_id: int = 7, labeled: int = 12, unlabeled: int = 30
) -> None:
    """Positive texts are a-heavy, negative b-heavy; the first ``labeled`` tasks carry labels."""
    ls.add_project(project_id, TEXT_CONFIG)
    for i in range(labeled + unlabeled):
        positive = i % 2 == 0
        text = (
            ("a" * (5 + i % 7) + "c" * (i % 3)) if positive else ("b" * (5 + i % 5) + "d" * (i % 4))
        )
        choices = (["pos"] if positive else ["neg"]) if i < labeled else None
        ls.add_task(project_id, 100 * project_id + i, {"text": text}, choices)


@pytest.fixture
def ls() -> FakeLabelStudio:
    return FakeLabelStudio()


def make_settings(tmp_path, **overrides) -> Settings:
    env = {
        "LABEL_STUDIO_URL": LS_URL,
        "LABEL_STUDIO_API_KEY": TOKEN,
        "MODEL_DIR": str(tmp_path / "models"),
        "AUTOAL_STRATEGY": "entropy",
        "AUTOAL_PUSH_WINDOW": "10",
        "AUTOAL_MIN_LABELS": "4",
        "DEVICE": "cpu",
        # The queue orders these tests assert are the strategy's: no task served at random
        # (the audit share has its own tests in test_loop.py).
        "AUTOAL_AUDIT_FRACTION": "0",
        "AUTOAL_AUDIT_UNTIL_TRUSTED": "0",
    }
    env.update({k: str(v) for k, v in overrides.items()})
    return Settings.from_env(env)


def make_backend(
    settings: Settings, ls: FakeLabelStudio, encoder: FakeEncoder | None = None
) -> Backend:
    encoder = encoder or FakeEncoder()
    return Backend(settings, encoder_factory=lambda name, device: encoder, session=ls.session())
