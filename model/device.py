"""Where tensors live: CUDA when present and asked for, the CPU otherwise."""

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """Map a setting (``auto``, ``cpu``, ``cuda``, ``cuda:N``) to a torch device.

    ``auto`` picks CUDA when available. Asking for CUDA where there is none is an error,
    not a silent fallback, so a misconfigured GPU box is noticed.
    """
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested, but CUDA is not available here")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N; got {name!r}")
    return torch.device(name)
