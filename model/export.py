"""The trained classifier as one file: everything predicting needs, nothing from Label Studio.

    from model.export import load
    model = load("project-7-r12.pt")
    model.predict(["an article about the election"])   # [{"labels": ["politics"], ...}]

A file holds the encoder (registry name and options, so the same frozen encoder is rebuilt),
the pool's standardisation (mean and std per embedding dimension), the task head's weights,
the label names in class order, whether the task is multi-label, and the model version and
time it was trained. ``predict`` embeds the items with that encoder, standardises them as the
pool was, and runs the head: the same probabilities the backend's round computed for its tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from model.task_model import TaskModel, standardise

EXPORT_FORMAT = 1


def export_state(
    model: TaskModel,
    mean: torch.Tensor,
    std: torch.Tensor,
    *,
    encoder: str,
    labels: list[str] | tuple[str, ...],
    model_version: str,
) -> dict:
    """The file's content for a trained ``model`` on features standardised with ``mean`` and
    ``std`` [d] of embeddings by ``encoder`` (``name[@key=value,...]``)."""
    return {
        "format": EXPORT_FORMAT,
        "encoder": encoder,
        "mean": mean.detach().float().cpu(),
        "std": std.detach().float().cpu(),
        "task_model": model.state_dict(),
        "labels": list(labels),
        "multilabel": bool(model.multilabel),
        "model_version": model_version,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


@dataclass
class ExportedModel:
    """A loaded export: ``predict`` / ``predict_proba`` on raw items (texts or PIL images)."""

    model: TaskModel
    mean: torch.Tensor
    std: torch.Tensor
    encoder_spec: str
    labels: list[str]
    multilabel: bool
    model_version: str
    trained_at: str
    _encoder: Any = None

    def encoder(self) -> Any:
        """The frozen encoder (built on first use)."""
        if self._encoder is None:
            from model.encoders import get_encoder, parse_encoder

            name, options = parse_encoder(self.encoder_spec)
            self._encoder = get_encoder(name, "cpu", **options)
        return self._encoder

    def proba_from_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        """[N, d] raw encoder outputs -> [N, C] probabilities."""
        features = standardise(embeddings.float(), stats=(self.mean, self.std))
        return self.model.predict_proba(features)

    def predict_proba(self, items: list) -> torch.Tensor:
        """Texts or PIL images [N] -> [N, C] probabilities (softmax, or sigmoids per label)."""
        return self.proba_from_embeddings(self.encoder().encode(list(items)))

    def predict(self, items: list) -> list[dict]:
        """Per item: the predicted labels and the model's probability for each of them
        (single-label: the top class; multi-label: every label above 0.5)."""
        out = []
        for row in self.predict_proba(items):
            if self.multilabel:
                chosen = [j for j in range(len(self.labels)) if float(row[j]) > 0.5]
            else:
                chosen = [int(row.argmax())]
            out.append(
                {
                    "labels": [self.labels[j] for j in chosen],
                    "confidence": [round(float(row[j]), 6) for j in chosen],
                }
            )
        return out


def load(path: str | Path) -> ExportedModel:
    """Read a file written by ``GET /projects/<id>/model`` (or ``export_state``)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{path}: export format {state.get('format')!r}; this version reads {EXPORT_FORMAT}")
    return ExportedModel(
        model=TaskModel.from_state_dict(state["task_model"]),
        mean=state["mean"],
        std=state["std"],
        encoder_spec=str(state["encoder"]),
        labels=[str(label) for label in state["labels"]],
        multilabel=bool(state["multilabel"]),
        model_version=str(state["model_version"]),
        trained_at=str(state["trained_at"]),
    )
