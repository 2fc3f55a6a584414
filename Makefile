# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= build/demo
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup demo test lint bench fashion-mnist clean

setup: $(STAMP) fashion-mnist

# Reinstalls only when pyproject.toml changed; pip, not uv (torch comes from local wheels).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Debian's dataset-fashion-mnist when we are root with apt; else productgen finds
# $$PRODUCTGEN_FASHION_MNIST_DIR or downloads the official files, and verifies them.
fashion-mnist: $(STAMP)
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -z "$$PRODUCTGEN_FASHION_MNIST_DIR" ] \
	    && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing dataset-fashion-mnist with apt-get"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
	  || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } \
	  || echo "apt-get could not install dataset-fashion-mnist; trying the other sources"; \
	fi
	@$(VENV)/bin/productgen fashion-mnist >/dev/null

demo: setup
	$(VENV)/bin/productgen demo-catalog --out $(DEMO_DIR)

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check productgen flows tests benchmarks
	$(VENV)/bin/ruff format --check productgen flows tests benchmarks

bench: setup
	$(PY) benchmarks/demo_catalog.py

clean:
	rm -rf build .pytest_cache
