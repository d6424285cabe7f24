"""The trained model as one file: everything predicting needs, nothing from Label Studio.

    from model.export import load
    model = load("project-7-r12.pt")
    model.predict(["an article about the election"])   # [{"labels": ["politics"], ...}]
    # a span project's model: [{"spans": [{"start": 0, "end": 5, "text": "Paris", "label": ...}]}]
    # a box project's model, on PIL images: [{"boxes": [{"x": 12.5, "y": 40.0, "width": ...}]}]

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

from model.kinds.boxes import BoxModel, standardise_maps
from model.kinds.spans import SpanModel, joined_tokens
from model.task_model import TaskModel, standardise

EXPORT_FORMAT = 1


def export_state(
    model: TaskModel | SpanModel | BoxModel,
    mean: torch.Tensor,
    std: torch.Tensor,
    *,
    encoder: str,
    labels: list[str] | tuple[str, ...],
    model_version: str,
    part_stats: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict:
    """The file's content for a trained ``model`` on features standardised with ``mean`` and
    ``std`` [d] of embeddings by ``encoder`` (``name[@key=value,...]``). A span model
    (``model.kinds.spans.SpanModel``) also needs the ``part_stats`` its tokens were
    standardised with, a box model (``model.kinds.boxes.BoxModel``) those of its maps."""
    if isinstance(model, BoxModel):
        if part_stats is None:
            raise ValueError("a box model's export needs the maps' standardisation (part_stats)")
        return {
            "format": EXPORT_FORMAT,
            "kind": "boxes",
            "encoder": encoder,
            "map_mean": part_stats[0].detach().float().cpu(),
            "map_std": part_stats[1].detach().float().cpu(),
            "box_model": model.state_dict(),
            "labels": list(labels),
            "model_version": model_version,
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    if isinstance(model, SpanModel):
        token_stats = part_stats
        if token_stats is None:
            raise ValueError("a span model's export needs the token standardisation (part_stats)")
        return {
            "format": EXPORT_FORMAT,
            "kind": "spans",
            "encoder": encoder,
            "token_mean": token_stats[0].detach().float().cpu(),
            "token_std": token_stats[1].detach().float().cpu(),
            "span_model": model.state_dict(),
            "labels": list(labels),
            "model_version": model_version,
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
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


def _build_encoder(exported: Any) -> Any:
    """An export's frozen encoder, built on first use."""
    if exported._encoder is None:
        from model.encoders import get_encoder, parse_encoder

        name, options = parse_encoder(exported.encoder_spec)
        exported._encoder = get_encoder(name, "cpu", **options)
    return exported._encoder


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
        return _build_encoder(self)

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


@dataclass
class ExportedSpanModel:
    """A loaded span export: ``predict`` on raw texts gives their entity spans."""

    model: SpanModel
    token_mean: torch.Tensor
    token_std: torch.Tensor
    encoder_spec: str
    labels: list[str]
    model_version: str
    trained_at: str
    _encoder: Any = None

    def encoder(self) -> Any:
        return _build_encoder(self)

    def predict(self, texts: list[str]) -> list[dict]:
        """Per text: its spans, each ``{"start", "end", "text", "label", "confidence"}`` with
        ``text == texts[i][start:end]``."""
        _, states, offsets = self.encoder().encode_tokens(list(texts))
        out = []
        for text, text_states, text_offsets in zip(texts, states, offsets, strict=True):
            features = standardise(text_states.float(), stats=(self.token_mean, self.token_std))
            probs = self.model.token_probs(features)
            bounds = torch.tensor([0, features.shape[0]])
            joined = torch.tensor(joined_tokens(text, text_offsets), dtype=torch.bool)
            path = self.model.decode(probs, bounds, joined)
            spans = []
            for span in self.model.spans(probs, path, bounds, 0):
                start, end = text_offsets[span.start][0], text_offsets[span.end - 1][1]
                spans.append({"start": start, "end": end, "text": text[start:end],
                              "label": self.labels[span.label], "confidence": round(span.score, 6)})  # fmt: skip
            out.append({"spans": spans})
        return out


@dataclass
class ExportedBoxModel:
    """A loaded box export: ``predict`` on PIL images gives their boxes."""

    model: BoxModel
    map_mean: torch.Tensor
    map_std: torch.Tensor
    encoder_spec: str
    labels: list[str]
    model_version: str
    trained_at: str
    _encoder: Any = None

    def encoder(self) -> Any:
        return _build_encoder(self)

    def predict(self, images: list, min_score: float = 0.3, max_boxes: int = 20) -> list[dict]:
        """Per image: its boxes scoring at least ``min_score`` (at most ``max_boxes``, best
        first), each ``{"x", "y", "width", "height"}`` in percent of the image (top-left
        corner), ``"label"``, ``"confidence"``, and the image's ``"original_width"`` and
        ``"original_height"`` in pixels: what a Label Studio rectangle region holds."""
        _, maps, sizes = self.encoder().encode_maps(list(images))
        detections, _ = self.model.detect(standardise_maps(maps, (self.map_mean, self.map_std)))
        out = []
        for i, (width, height) in enumerate(sizes.tolist()):
            boxes, classes, scores = detections.image(i, min_score)
            found = []
            for (x0, y0, x1, y1), label, score in zip(
                boxes.tolist(), classes.tolist(), scores.tolist(), strict=True
            ):
                found.append({"x": round(x0 * 100, 3), "y": round(y0 * 100, 3),
                              "width": round((x1 - x0) * 100, 3), "height": round((y1 - y0) * 100, 3),
                              "label": self.labels[label], "confidence": round(score, 6),
                              "original_width": width, "original_height": height})  # fmt: skip
            out.append({"boxes": found[:max_boxes]})
        return out


def load(path: str | Path) -> ExportedModel | ExportedSpanModel | ExportedBoxModel:
    """Read a file written by ``GET /projects/<id>/model`` (or ``export_state``)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != EXPORT_FORMAT:
        raise ValueError(
            f"{path}: export format {state.get('format')!r}; this version reads {EXPORT_FORMAT}"
        )
    if state.get("kind") == "boxes":
        return ExportedBoxModel(
            model=BoxModel.from_state_dict(state["box_model"]),
            map_mean=state["map_mean"],
            map_std=state["map_std"],
            encoder_spec=str(state["encoder"]),
            labels=[str(label) for label in state["labels"]],
            model_version=str(state["model_version"]),
            trained_at=str(state["trained_at"]),
        )
    if state.get("kind") == "spans":
        return ExportedSpanModel(
            model=SpanModel.from_state_dict(state["span_model"]),
            token_mean=state["token_mean"],
            token_std=state["token_std"],
            encoder_spec=str(state["encoder"]),
            labels=[str(label) for label in state["labels"]],
            model_version=str(state["model_version"]),
            trained_at=str(state["trained_at"]),
        )
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
