"""Reading a task's content: image bytes from URLs, Label Studio paths or data URIs; text inline.

A task whose content cannot be read raises ``TaskDataError`` with the reason; the loop logs
it, leaves the task out of this round and tries again next round.
"""

import base64
import binascii
import hashlib
import io
import time
import warnings
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes, urljoin, urlsplit

import requests
from PIL import Image, ImageOps, UnidentifiedImageError

from autoal_backend.kinds import ProjectSpec

MAX_BYTES = 50 * 1024 * 1024  # a bigger "image" is a mistake, not a task
# Decoded size cap: a small PNG can claim a gigapixel canvas (a decompression bomb).
MAX_PIXELS = 40_000_000
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 20  # between two chunks
TOTAL_TIMEOUT_S = 60  # for the whole body: a server that trickles bytes is cut off
MAX_REDIRECTS = 3
REDIRECTS = {301, 302, 303, 307, 308}

# Returns extra request headers for a URL (Label Studio's auth for its own files), or {}.
HeaderProvider = Callable[[str], dict[str, str]]


class TaskDataError(ValueError):
    """A task's content could not be read; the message says why."""


def raw_value(task: dict, spec: ProjectSpec) -> str:
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


def content_key(value: str, spec: ProjectSpec) -> str:
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


def host_allowed(url: str, label_studio_url: str, allowed_hosts: tuple[str, ...]) -> bool:
    """With ``allowed_hosts`` set (``AUTOAL_ALLOWED_HOSTS``), only Label Studio's own host and
    those hosts (``name`` or ``name:port``) may be fetched from; unset, any host may."""
    if not allowed_hosts:
        return True
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    with_port = f"{host}:{parts.port}" if parts.port else host
    own = urlsplit(label_studio_url) if label_studio_url else None
    if own is not None and (own.hostname or "").lower() == host and own.port == parts.port:
        return True
    return host in allowed_hosts or with_port in allowed_hosts


def fetch_bytes(
    value: str,
    *,
    label_studio_url: str = "",
    headers_for: HeaderProvider | None = None,
    session: requests.Session | None = None,
    allowed_hosts: tuple[str, ...] = (),
) -> bytes:
    """The bytes behind ``value`` (data URI, URL or Label Studio path), at most MAX_BYTES,
    within TOTAL_TIMEOUT_S, from an allowed host (redirects are followed only to allowed
    hosts, at most MAX_REDIRECTS)."""
    if value.startswith("data:"):
        if len(value) > MAX_BYTES * 4 // 3 + 1024:
            raise TaskDataError(f"data URI is larger than {MAX_BYTES} bytes")
        return decode_data_uri(value)
    url = resolve_url(value, label_studio_url)
    getter = session.get if session is not None else requests.get
    for _hop in range(MAX_REDIRECTS + 1):
        if not host_allowed(url, label_studio_url, allowed_hosts):
            raise TaskDataError(
                f"{url[:120]}: host {urlsplit(url).hostname!r} is not Label Studio's nor in AUTOAL_ALLOWED_HOSTS"
            )
        headers = headers_for(url) if headers_for else {}
        try:
            response = getter(
                url, headers=headers, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
                stream=True, allow_redirects=False,
            )  # fmt: skip
        except requests.RequestException as exc:
            raise TaskDataError(f"cannot fetch {url[:120]}: {type(exc).__name__}") from None
        location = response.headers.get("Location")
        if response.status_code in REDIRECTS and location:
            response.close()
            url = urljoin(url, location)
            continue
        break
    else:
        raise TaskDataError(f"cannot fetch {value[:120]}: more than {MAX_REDIRECTS} redirects")
    try:
        if response.status_code != 200:
            raise TaskDataError(f"cannot fetch {url[:120]}: HTTP {response.status_code}")
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > MAX_BYTES:
            raise TaskDataError(
                f"{url[:120]} is larger than {MAX_BYTES} bytes ({declared} declared)"
            )
        return _read_capped(response, url)
    finally:
        response.close()


def _read_capped(response: requests.Response, url: str) -> bytes:
    """The body, chunk by chunk, stopping at MAX_BYTES or TOTAL_TIMEOUT_S."""
    deadline = time.monotonic() + TOTAL_TIMEOUT_S
    body = bytearray()
    try:
        for chunk in response.iter_content(chunk_size=1 << 16):
            body += chunk
            if len(body) > MAX_BYTES:
                raise TaskDataError(f"{url[:120]} is larger than {MAX_BYTES} bytes")
            if time.monotonic() > deadline:
                raise TaskDataError(f"{url[:120]}: no complete answer within {TOTAL_TIMEOUT_S} s")
    except requests.RequestException as exc:
        raise TaskDataError(f"cannot fetch {url[:120]}: {type(exc).__name__}") from None
    return bytes(body)


def decode_image(body: bytes) -> Image.Image:
    """RGB PIL image from encoded bytes; refuses a canvas above MAX_PIXELS before decoding it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below
            image = Image.open(io.BytesIO(body))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise TaskDataError(
                    f"image of {width} x {height} pixels is larger than {MAX_PIXELS} pixels "
                    "(a decompression bomb, or far too large to label)"
                )
            image.load()
            # Turned as its EXIF orientation says, as browsers (and so the labeling editor)
            # show it: a box drawn in the editor is in the turned image's percentages.
            turned: Image.Image = ImageOps.exif_transpose(image)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise TaskDataError(f"not a readable image ({len(body)} bytes): {exc}") from None
    return turned.convert("RGB")


def load_item(
    task: dict,
    spec: ProjectSpec,
    *,
    label_studio_url: str = "",
    headers_for: HeaderProvider | None = None,
    session: requests.Session | None = None,
    allowed_hosts: tuple[str, ...] = (),
) -> Image.Image | str:
    """What the encoder takes for ``task``: a PIL image, or the text."""
    value = raw_value(task, spec)
    if spec.modality == "text" and spec.value_type != "url":
        return value
    body = fetch_bytes(
        value, label_studio_url=label_studio_url, headers_for=headers_for, session=session,
        allowed_hosts=allowed_hosts,
    )  # fmt: skip
    if spec.modality == "text":
        return body.decode("utf-8", errors="replace")
    return decode_image(body)


class RemoteLoader:
    """``load_item`` for a task reference, as a picklable callable for Ray workers: the raw
    value (URL, Label Studio path, data URI or text) in, the encoder's input out. Each worker
    builds its own Label Studio client on first use, so auth tokens (a PAT's access token
    included) are refreshed where they are used."""

    def __init__(
        self,
        spec: ProjectSpec,
        label_studio_url: str,
        api_key: str,
        allowed_hosts: tuple[str, ...] = (),
    ) -> None:
        self.spec = spec
        self.label_studio_url = label_studio_url
        self.api_key = api_key
        self.allowed_hosts = tuple(allowed_hosts)
        self._client: Any = None  # a LabelStudioClient, made on first use in the worker process

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_client": None}

    def __call__(self, value: str) -> Image.Image | str:
        if self.spec.modality == "text" and self.spec.value_type != "url":
            return value
        if self._client is None and self.label_studio_url and self.api_key:
            from autoal_backend.ls_client import LabelStudioClient

            self._client = LabelStudioClient(self.label_studio_url, self.api_key)
        client = self._client
        task = {"id": 0, "data": {self.spec.data_key: value}}
        return load_item(
            task, self.spec, label_studio_url=self.label_studio_url,
            headers_for=client.headers_for if client is not None else None,
            session=client.session if client is not None else None,
            allowed_hosts=self.allowed_hosts,
        )  # fmt: skip
