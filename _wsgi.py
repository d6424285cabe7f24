"""Entry point: ``python _wsgi.py --port 9090 --model-dir ./models`` or ``gunicorn _wsgi:app``.

Under gunicorn the settings come from the environment. ``app`` is built on first access
(PEP 562), so importing this module starts nothing.
"""

import argparse
import logging
import os
import sys

# Before anything loads torch (OpenMP reads this once): idle OpenMP threads sleep instead of
# spinning. With the default spin, a 12-label task-model fit took 18-24 s instead of 0.4 s
# whenever anything else (Label Studio) used the CPU (docs/performance.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from autoal_backend.settings import Settings, SettingsError  # noqa: E402


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )


def build_app(settings: Settings):
    from autoal_backend.app import create_app

    _configure_logging(settings.log_level)
    logging.getLogger("autoal_backend").info("starting with %r", settings)
    return create_app(settings)


_app = None


def __getattr__(name: str):
    global _app
    if name == "app":
        if _app is None:
            _app = build_app(Settings.from_env())
        return _app
    raise AttributeError(name)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="AutoAL Label Studio ML backend")
    parser.add_argument("--port", type=int, default=9090)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING, ERROR")
    parser.add_argument("--model-dir", default=None, help="where per-project state lives")
    parser.add_argument("--basic-auth-user", default=None)
    parser.add_argument("--basic-auth-pass", default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = Settings.from_env(
            log_level=args.log_level.upper() if args.log_level else None,
            model_dir=args.model_dir,
            basic_auth_user=args.basic_auth_user,
            basic_auth_pass=args.basic_auth_pass,
        )
        app = build_app(settings)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app.run(host=args.host, port=args.port, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
