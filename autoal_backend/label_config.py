"""What every kind's label-config parser shares: the error that names what the backend cannot
learn from, and the SDK's parse of a config. The kinds themselves are in ``autoal_backend.kinds``.
"""

from label_studio_sdk.label_interface import LabelInterface


class UnsupportedConfigError(ValueError):
    """A label config this backend cannot learn from; the message says why."""


def load_interface(config: str) -> LabelInterface:
    """The SDK's view of a label config; UnsupportedConfigError when it is empty or not XML."""
    if not isinstance(config, str) or not config.strip():
        raise UnsupportedConfigError("label config is empty")
    try:
        return LabelInterface(config)
    except Exception as exc:  # the SDK raises several kinds on bad XML
        raise UnsupportedConfigError(f"label config is not valid XML: {exc}") from None
