"""Bad input from a caller, as an HTTP status and a message the caller can act on."""


class RequestError(ValueError):
    """Bad input from a caller; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_project_id(value: object, field: str = "project") -> int:
    """Label Studio sends ``"<id>.<created_ts>"`` (setup/predict) or an int (webhooks)."""
    if isinstance(value, bool):
        raise RequestError(f"'{field}' must be a project id, got a boolean")
    if isinstance(value, int):
        project_id = value
    elif isinstance(value, str) and value.split(".", 1)[0].strip().isdigit():
        project_id = int(value.split(".", 1)[0])
    else:
        raise RequestError(
            f"'{field}' must be a project id like 12 or \"12.1700000000\", got {value!r:.60}"
        )
    if project_id <= 0:
        raise RequestError(f"'{field}' must be a positive project id, got {project_id}")
    return project_id
