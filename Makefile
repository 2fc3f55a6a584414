# Two commands do everything on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BUILD ?= build
DEMO_MINUTES ?= 10
PG := $(VENV)/bin/productgen
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

# The main job on the embedded default: catalog -> snapshot -> embeddings -> model -> samples.
# Each step is a file target, so a second `make demo` redoes only what changed.
demo: setup $(BUILD)/run/model.safetensors
	$(PG) sample $(BUILD)/run --out $(BUILD)/run/prompts.png -n 6 \
	  --text "burgundy ankle boots" --text "navy wool coat" --text "scarlet sneakers" \
	  --text "mustard yellow tote bag" --text "teal summer dress" --text "black t-shirt"
	@echo
	@echo "demo catalog:   $(BUILD)/demo/catalog.parquet ($(BUILD)/demo/images/)"
	@echo "snapshot:       $(BUILD)/snapshot/ (valid.parquet, rejects.csv, embeddings.parquet)"
	@echo "trained model:  $(BUILD)/run/ (run.json, model.safetensors, checkpoints/)"
	@echo "sample sheet:   $(BUILD)/run/samples/latest.png"
	@echo "prompt sheet:   $(BUILD)/run/prompts.png"

$(BUILD)/demo/catalog.parquet: | $(STAMP)
	$(PG) demo-catalog --out $(BUILD)/demo

$(BUILD)/snapshot/valid.parquet: $(BUILD)/demo/catalog.parquet
	$(PG) ingest $< --out $(BUILD)/snapshot

$(BUILD)/snapshot/embeddings.parquet: $(BUILD)/snapshot/valid.parquet
	$(PG) encode $(BUILD)/snapshot --cache $(BUILD)/embedding-cache

$(BUILD)/run/model.safetensors: $(BUILD)/snapshot/embeddings.parquet
	rm -rf $(BUILD)/run
	$(PG) train $(BUILD)/snapshot --out $(BUILD)/run --preset cpu-demo --max-minutes $(DEMO_MINUTES)

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check productgen flows tests benchmarks
	$(VENV)/bin/ruff format --check productgen flows tests benchmarks

bench: setup
	$(PY) benchmarks/demo_catalog.py
	$(PY) benchmarks/ingest.py
	$(PY) benchmarks/encode.py
	$(PY) benchmarks/train.py --preset cpu-demo --steps 60

clean:
	rm -rf build .pytest_cache
