# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUILD ?= build
DEMO_MINUTES ?= 10
DEMO_JUDGE_EPOCHS ?= 3
PG := $(VENV)/bin/productgen
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: setup demo serve stop test test-fast lint bench fashion-mnist chromium wordnet clean

setup: $(STAMP) fashion-mnist chromium wordnet

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

# Chromium for the browser test of the Prefect UI (Debian packages; the test skips without it).
chromium:
	@if ! command -v chromium >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium with apt-get"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
	  || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; } \
	  || echo "apt-get could not install chromium; the UI test will be skipped"; \
	fi

# WordNet 3.0 (Debian's wordnet-base): the attribute reader places category nouns no word list
# has ("galoshes", "muumuu") through its hypernyms; without it those rows fall to the next step.
wordnet:
	@if [ ! -f /usr/share/wordnet/data.noun ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing wordnet-base with apt-get"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q wordnet-base >/dev/null 2>&1 \
	  || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wordnet-base >/dev/null 2>&1; } \
	  || echo "apt-get could not install wordnet-base; category nouns outside the lists use the text model only"; \
	fi

# The main job: the nightly Prefect flow on the demo catalog against the local S3 server
# (ingest, encode, train for DEMO_MINUTES, evaluate + gate, render, publish). A second run is
# incremental: nothing is retrained or re-published unless the catalog changed.
demo: $(STAMP) fashion-mnist wordnet  # chromium is for the UI test only
	$(PY) -m flows.demo --build $(BUILD) --minutes $(DEMO_MINUTES) --judge-epochs $(DEMO_JUDGE_EPOCHS)

# The Prefect UI on http://127.0.0.1:4200 with the deployments served (and the local S3 server).
serve: setup
	$(PY) -m flows.local serve --build $(BUILD)

# Stop the background services `make demo` / `make serve` started (the S3 server's data is already on disk).
stop:
	$(PY) -m flows.local stop --build $(BUILD)

# Everything (what CI runs). `make test-fast` skips the `slow` tier (Prefect servers, the browser,
# CLI subprocesses that train or render): the edit loop, about a minute.
test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

lint: setup
	$(VENV)/bin/ruff check productgen flows tests benchmarks
	$(VENV)/bin/ruff format --check productgen flows tests benchmarks

bench: setup
	$(PY) benchmarks/demo_catalog.py
	$(PY) benchmarks/ingest.py
	$(PY) benchmarks/encode.py
	$(PY) benchmarks/train.py --preset cpu-demo --steps 60
	$(PY) benchmarks/render.py

clean:
	rm -rf build .pytest_cache
