"""The service's settings: one frozen object, read once from the environment and flags.

Some settings can also be given per project, in the ML backend's "extra params" that Label
Studio sends with ``/setup`` (``PROJECT_SETTINGS``): the same names, the same parsers, the same
error messages; the environment stays the default for every project that sets nothing.
"""

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}
# The most boxes a prediction may show per image (``model.kinds.boxes.DETECTIONS``, COCO's
# limit; not imported: settings load without torch).
MAX_BOXES = 100


class SettingsError(ValueError):
    """A setting with a value the service cannot run with; the message names it."""


def _as_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise SettingsError(f"{name}: expected true/false, got {raw!r}")


def _as_int(name: str, raw: str, minimum: int, maximum: int | None = None) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}: expected an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise SettingsError(f"{name}: expected an integer {bounds}, got {value}")
    return value


def _as_fraction(name: str, raw: str, maximum: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(
            f"{name}: expected a number between 0 and {maximum:g}, got {raw!r}"
        ) from None
    if not 0.0 <= value <= maximum:
        raise SettingsError(f"{name}: expected a number between 0 and {maximum:g}, got {value:g}")
    return value


def _as_hosts(name: str, raw: str) -> tuple[str, ...]:
    """Comma-separated host names (or host:port), lower-cased; '' = no restriction."""
    hosts = tuple(h.strip().lower() for h in raw.split(",") if h.strip())
    bad = [h for h in hosts if "/" in h or " " in h]
    if bad:
        raise SettingsError(f"{name}: expected host names like images.example.com, got {bad}")
    return hosts


def _as_window(name: str, raw: str) -> int:
    """A push window: a count >= 1, or ``auto`` (0: sized per round to the labels that arrive
    between two rounds, ``autoal_backend.rounds.rank.auto_window``)."""
    if raw.strip().lower() == "auto":
        return 0
    try:
        return _as_int(name, raw, 1)
    except SettingsError:
        raise SettingsError(
            f"{name}: expected an integer >= 1 or 'auto', got {raw.strip()!r}"
        ) from None


def _as_strategy(name: str, raw: str) -> str:
    return raw.strip() or "autoal"


def _as_encoder(name: str, raw: str) -> str:
    return raw.strip()


# The settings a project may override: environment variable -> (Settings field, parser).
PROJECT_SETTINGS: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "AUTOAL_STRATEGY": ("strategy", _as_strategy),
    "AUTOAL_PUSH_WINDOW": ("push_window", _as_window),
    "AUTOAL_MIN_LABELS": ("min_labels", lambda n, raw: _as_int(n, raw, 1)),
    "AUTOAL_IMAGE_ENCODER": ("image_encoder", _as_encoder),
    "AUTOAL_TEXT_ENCODER": ("text_encoder", _as_encoder),
    "AUTOAL_SET_SAMPLING": ("set_sampling", _as_bool),
    "AUTOAL_AUDIT_FRACTION": ("audit_fraction", lambda n, raw: _as_fraction(n, raw, 0.5)),
    "AUTOAL_AUDIT_UNTIL_TRUSTED": (
        "audit_until_trusted",
        lambda n, raw: _as_fraction(n, raw, 1.0),
    ),
    "AUTOAL_SPAN_MIN_SCORE": ("span_min_score", lambda n, raw: _as_fraction(n, raw, 1.0)),
    "AUTOAL_BOX_MIN_SCORE": ("box_min_score", lambda n, raw: _as_fraction(n, raw, 1.0)),
    "AUTOAL_MAX_BOXES": ("max_boxes", lambda n, raw: _as_int(n, raw, 1, MAX_BOXES)),
}
PROJECT_SETTING_DEFAULTS = {
    "AUTOAL_STRATEGY": "autoal",
    "AUTOAL_PUSH_WINDOW": "100",
    "AUTOAL_MIN_LABELS": "10",
    "AUTOAL_IMAGE_ENCODER": "",
    "AUTOAL_TEXT_ENCODER": "",
    "AUTOAL_SET_SAMPLING": "true",
    "AUTOAL_AUDIT_FRACTION": "0.05",
    "AUTOAL_AUDIT_UNTIL_TRUSTED": "0.25",
    "AUTOAL_SPAN_MIN_SCORE": "0.5",
    "AUTOAL_BOX_MIN_SCORE": "0.3",
    "AUTOAL_MAX_BOXES": "20",
}


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
    max_projects: int = 200
    webhook_secret: str = ""
    reconcile_seconds: int = 60
    allowed_hosts: tuple[str, ...] = ()
    max_body_mb: int = 64
    # The share of the queue served at random (audit tasks, model.estimate): once the
    # accuracy figure is trusted, and until then.
    audit_fraction: float = 0.05
    audit_until_trusted: float = 0.25
    # Span projects: predicted spans below this confidence are not shown to annotators.
    span_min_score: float = 0.5
    # Box projects: predicted boxes below this score are not shown, nor more than max_boxes.
    box_min_score: float = 0.3
    max_boxes: int = 20
    ray_address: str = ""
    shortlist: int = 20_000

    def __repr__(self) -> str:
        # Never print the API key, the password or the webhook secret, even in a debug log.
        secret = {"label_studio_api_key", "basic_auth_pass", "webhook_secret"}
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
        line flags) win over the environment. Validates everything it can without I/O."""
        env = os.environ if env is None else env

        def get(name: str, default: str = "") -> str:
            return env.get(name, default)

        project = {
            field: parse(variable, get(variable, PROJECT_SETTING_DEFAULTS[variable]))
            for variable, (field, parse) in PROJECT_SETTINGS.items()
        }
        settings = cls(
            label_studio_url=get("LABEL_STUDIO_URL").rstrip("/"),
            label_studio_api_key=get("LABEL_STUDIO_API_KEY").strip(),
            model_dir=Path(get("MODEL_DIR", "./models")),
            basic_auth_user=get("BASIC_AUTH_USER"),
            basic_auth_pass=get("BASIC_AUTH_PASS"),
            log_level=get("LOG_LEVEL", "INFO").upper(),
            device=get("DEVICE", "auto").strip().lower() or "auto",
            seed=_as_int("AUTOAL_SEED", get("AUTOAL_SEED", "0"), 0),
            max_projects=_as_int("AUTOAL_MAX_PROJECTS", get("AUTOAL_MAX_PROJECTS", "200"), 1),
            webhook_secret=get("AUTOAL_WEBHOOK_SECRET").strip(),
            reconcile_seconds=_as_int(
                "AUTOAL_RECONCILE_SECONDS", get("AUTOAL_RECONCILE_SECONDS", "60"), 0
            ),
            allowed_hosts=_as_hosts("AUTOAL_ALLOWED_HOSTS", get("AUTOAL_ALLOWED_HOSTS")),
            max_body_mb=_as_int("AUTOAL_MAX_BODY_MB", get("AUTOAL_MAX_BODY_MB", "64"), 1),
            ray_address=get("AUTOAL_RAY_ADDRESS").strip(),
            shortlist=_as_int("AUTOAL_SHORTLIST", get("AUTOAL_SHORTLIST", "20000"), 0),
            **project,
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
            raise SettingsError(
                f"LOG_LEVEL: expected DEBUG/INFO/WARNING/ERROR, got {self.log_level!r}"
            )
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
        validate_encoder("AUTOAL_IMAGE_ENCODER", self.image_encoder, "image")
        validate_encoder("AUTOAL_TEXT_ENCODER", self.text_encoder, "text")

    def for_project(self, overrides: Mapping[str, str]) -> "Settings":
        """These settings with a project's overrides ({variable: raw value}, as
        ``parse_project_settings`` returns them) applied and validated."""
        if not overrides:
            return self
        changed = {
            PROJECT_SETTINGS[variable][0]: PROJECT_SETTINGS[variable][1](variable, raw)
            for variable, raw in overrides.items()
        }
        settings = replace(self, **changed)
        settings.validate()
        return settings


def validate_strategy(name: str) -> None:
    """Raise SettingsError listing the valid selectors when ``name`` is not one."""
    from model.selectors import selector_names

    valid = selector_names(kind=None)  # a span project takes span strategies too
    if name not in valid:
        raise SettingsError(
            f"AUTOAL_STRATEGY: unknown strategy {name!r}; valid: {', '.join(valid)}"
        )


def validate_encoder(variable: str, spec: str, modality: str) -> None:
    """An encoder setting (``name[@key=value,...]``, parsed by the encoder registry) that
    names a ``modality`` encoder with options it takes; '' means the default."""
    if not spec:
        return
    from model.encoders import encoder_modality, parse_encoder

    try:
        name, _ = parse_encoder(spec)
    except (KeyError, ValueError) as exc:
        raise SettingsError(f"{variable}: {exc}") from None
    found = encoder_modality(name)
    if found != modality:
        raise SettingsError(f"{variable}: {name!r} encodes {found}s, not {modality}s")


def _short_name(variable: str) -> str:
    return variable.removeprefix("AUTOAL_").lower()


def parse_project_settings(extra: object, defaults: Settings) -> dict[str, str]:
    """A project's setting overrides from Label Studio's ``extra_params``: {variable: raw
    value}. Keys are the environment names (``AUTOAL_STRATEGY``) or their short forms
    (``strategy``); values strings, numbers or booleans. Everything is checked exactly as the
    environment is (``Settings.for_project``): SettingsError names the problem."""
    if extra is None or extra == "":
        return {}
    if not isinstance(extra, dict):
        raise SettingsError(
            f"extra_params: expected an object of settings, got {type(extra).__name__}"
        )
    short = {_short_name(v): v for v in PROJECT_SETTINGS}
    overrides: dict[str, str] = {}
    for key, value in extra.items():
        variable = key if key in PROJECT_SETTINGS else short.get(str(key).lower())
        if variable is None:
            valid = ", ".join(f"{v} ({_short_name(v)})" for v in PROJECT_SETTINGS)
            raise SettingsError(
                f"extra_params: unknown setting {key!r}; per-project settings: {valid}"
            )
        if isinstance(value, bool):
            raw = "true" if value else "false"
        elif isinstance(value, int | float | str):
            raw = str(value)
        else:
            raise SettingsError(
                f"{variable}: expected a string, number or boolean, got {type(value).__name__}"
            )
        overrides[variable] = raw
    defaults.for_project(overrides)  # validates, with the environment's messages
    return overrides
