"""The service's settings: one frozen object, read once from the environment and flags."""

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


class SettingsError(ValueError):
    """A setting with a value the service cannot run with; the message names it."""


def _as_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise SettingsError(f"{name}: expected true/false, got {raw!r}")


def _as_int(name: str, raw: str, minimum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}: expected an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name}: expected an integer >= {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything the backend is configured with. Secrets are excluded from ``repr``."""

    label_studio_url: str = ""
    label_studio_api_key: str = ""
    model_dir: Path = Path("./models")
    basic_auth_user: str = ""
    basic_auth_pass: str = ""
    log_level: str = "INFO"
    device: str = "auto"
    strategy: str = "autoal"
    image_encoder: str = ""
    text_encoder: str = ""
    push_window: int = 100
    set_sampling: bool = True
    min_labels: int = 10
    seed: int = 0

    def __repr__(self) -> str:
        # Never print the API key or the password, even in a debug log of the settings.
        secret = {"label_studio_api_key", "basic_auth_pass"}
        shown = ", ".join(
            f"{f.name}={'***' if f.name in secret and getattr(self, f.name) else getattr(self, f.name)!r}"
            for f in fields(self)
        )
        return f"Settings({shown})"

    @property
    def basic_auth(self) -> bool:
        return bool(self.basic_auth_user)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> "Settings":
        """Read the settings from ``env`` (default ``os.environ``); ``overrides`` (command
        line flags) win over the environment. Validates everything it can without I/O;
        the strategy name is checked by ``validate_strategy``."""
        env = os.environ if env is None else env

        def get(name: str, default: str = "") -> str:
            return env.get(name, default)

        settings = cls(
            label_studio_url=get("LABEL_STUDIO_URL").rstrip("/"),
            label_studio_api_key=get("LABEL_STUDIO_API_KEY").strip(),
            model_dir=Path(get("MODEL_DIR", "./models")),
            basic_auth_user=get("BASIC_AUTH_USER"),
            basic_auth_pass=get("BASIC_AUTH_PASS"),
            log_level=get("LOG_LEVEL", "INFO").upper(),
            device=get("DEVICE", "auto").strip().lower() or "auto",
            strategy=get("AUTOAL_STRATEGY", "autoal").strip() or "autoal",
            image_encoder=get("AUTOAL_IMAGE_ENCODER").strip(),
            text_encoder=get("AUTOAL_TEXT_ENCODER").strip(),
            push_window=_as_int("AUTOAL_PUSH_WINDOW", get("AUTOAL_PUSH_WINDOW", "100"), 1),
            set_sampling=_as_bool("AUTOAL_SET_SAMPLING", get("AUTOAL_SET_SAMPLING", "true")),
            min_labels=_as_int("AUTOAL_MIN_LABELS", get("AUTOAL_MIN_LABELS", "10"), 1),
            seed=_as_int("AUTOAL_SEED", get("AUTOAL_SEED", "0"), 0),
        )
        given: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
        if "model_dir" in given:
            given["model_dir"] = Path(str(given["model_dir"]))
        if "label_studio_url" in given:
            given["label_studio_url"] = str(given["label_studio_url"]).rstrip("/")
        settings = replace(settings, **given)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Fail at startup, naming the setting, rather than at the first round."""
        if self.log_level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise SettingsError(f"LOG_LEVEL: expected DEBUG/INFO/WARNING/ERROR, got {self.log_level!r}")
        if self.device != "auto" and self.device != "cpu" and not self.device.startswith("cuda"):
            raise SettingsError(f"DEVICE: expected auto, cpu or cuda[:N], got {self.device!r}")
        if self.device.startswith("cuda"):
            from model.device import resolve_device

            try:
                resolve_device(self.device)
            except ValueError as exc:
                raise SettingsError(f"DEVICE: {exc}") from None
        if bool(self.basic_auth_user) != bool(self.basic_auth_pass):
            raise SettingsError("BASIC_AUTH_USER and BASIC_AUTH_PASS must be set together")
        if self.label_studio_url and not self.label_studio_url.startswith(("http://", "https://")):
            raise SettingsError(
                f"LABEL_STUDIO_URL: expected http(s)://host[:port], got {self.label_studio_url!r}"
            )
        validate_strategy(self.strategy)


def validate_strategy(name: str) -> None:
    """Raise SettingsError listing the valid selectors when ``name`` is not one."""
    from model.selection import selector_names

    valid = selector_names()
    if name not in valid:
        raise SettingsError(f"AUTOAL_STRATEGY: unknown strategy {name!r}; valid: {', '.join(valid)}")
