"""Reading a task's content: image bytes from URLs, Label Studio paths or data URIs; text inline.

A task whose content cannot be read raises ``TaskDataError`` with the reason; the loop logs
it, leaves the task out of this round and tries again next round.
"""

import base64
import binascii
import hashlib
import io
from collections.abc import Callable
from urllib.parse import unquote_to_bytes, urlsplit

import requests
from PIL import Image, UnidentifiedImageError

from autoal_backend.label_config import LabelSpec

MAX_BYTES = 50 * 1024 * 1024  # a bigger "image" is a mistake, not a task
TIMEOUT_S = 20

# Returns extra request headers for a URL (Label Studio's auth for its own files), or {}.
HeaderProvider = Callable[[str], dict[str, str]]


class TaskDataError(ValueError):
    """A task's content could not be read; the message says why."""


def raw_value(task: dict, spec: LabelSpec) -> str:
    """The task's data field the label config reads, as a string (URL, data URI or text)."""
    data = task.get("data")
    if not isinstance(data, dict):
        raise TaskDataError(f"task {task.get('id')}: no 'data' object")
    if spec.data_key not in data:
        raise TaskDataError(
            f"task {task.get('id')}: data has no field {spec.data_key!r} "
            f"(has {', '.join(sorted(map(str, data))) or 'none'})"
        )
    value = data[spec.data_key]
    if not isinstance(value, str) or not value.strip():
        raise TaskDataError(
            f"task {task.get('id')}: field {spec.data_key!r} must be a non-empty string, "
            f"got {type(value).__name__}"
        )
    return value


def content_key(value: str, spec: LabelSpec) -> str:
    """The embedding-cache key of a task's content.

    Keyed by the reference (URL or text), not by downloaded bytes: a round then needs no
    download for a task it has embedded before, which keeps a 10k-task refresh in seconds.
    """
    return hashlib.sha256(f"{spec.modality}\0{value}".encode()).hexdigest()


def decode_data_uri(uri: str) -> bytes:
    """The payload of a ``data:[<type>][;base64],<data>`` URI."""
    header, sep, payload = uri.partition(",")
    if not sep:
        raise TaskDataError("data URI has no ',' separating header and payload")
    if header.endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise TaskDataError(f"data URI has invalid base64: {exc}") from None
    return unquote_to_bytes(payload)


def resolve_url(value: str, label_studio_url: str) -> str:
    """An absolute URL for ``value``; Label Studio-hosted paths (``/data/...``) are joined to
    ``label_studio_url``."""
    if value.startswith(("http://", "https://")):
        return value
    if value.startswith("/"):
        if not label_studio_url:
            raise TaskDataError(
                f"{value[:80]!r} is a Label Studio path, but LABEL_STUDIO_URL is not set"
            )
        return label_studio_url.rstrip("/") + value
    scheme = urlsplit(value).scheme
    raise TaskDataError(
        f"unsupported reference {value[:80]!r}"
        + (f" (scheme {scheme!r})" if scheme else "")
        + ": expected http(s) URL, /data/... path or data: URI"
    )


def fetch_bytes(
    value: str,
    *,
    label_studio_url: str = "",
    headers_for: HeaderProvider | None = None,
    session: requests.Session | None = None,
) -> bytes:
    """The bytes behind ``value`` (data URI, URL or Label Studio path)."""
    if value.startswith("data:"):
        return decode_data_uri(value)
    url = resolve_url(value, label_studio_url)
    headers = headers_for(url) if headers_for else {}
    getter = session.get if session is not None else requests.get
    try:
        response = getter(url, headers=headers, timeout=TIMEOUT_S)
    except requests.RequestException as exc:
        raise TaskDataError(f"cannot fetch {url[:120]}: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise TaskDataError(f"cannot fetch {url[:120]}: HTTP {response.status_code}")
    body = response.content
    if len(body) > MAX_BYTES:
        raise TaskDataError(f"{url[:120]} is larger than {MAX_BYTES} bytes")
    return body


def decode_image(body: bytes) -> Image.Image:
    """RGB PIL image from encoded bytes."""
    try:
        image = Image.open(io.BytesIO(body))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise TaskDataError(f"not a readable image ({len(body)} bytes): {exc}") from None
    return image.convert("RGB")


def load_item(
    task: dict,
    spec: LabelSpec,
    *,
    label_studio_url: str = "",
    headers_for: HeaderProvider | None = None,
    session: requests.Session | None = None,
) -> Image.Image | str:
    """What the encoder takes for ``task``: a PIL image, or the text."""
    value = raw_value(task, spec)
    if spec.modality == "text":
        if spec.value_type != "url":
            return value
        body = fetch_bytes(
            value, label_studio_url=label_studio_url, headers_for=headers_for, session=session
        )
        return body.decode("utf-8", errors="replace")
    body = fetch_bytes(
        value, label_studio_url=label_studio_url, headers_for=headers_for, session=session
    )
    return decode_image(body)
