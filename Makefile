# Fresh machine: `make quickstart` (set up, then the main job) and `make test` (set up, then lint and tests).
# `make demo` serves the quickstart model in the Gradio app.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: setup browser oldest quickstart demo test lint format constraints clean

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

setup: $(STAMP)

# Debian's Chromium for the browser test (Playwright drives it; its own browser download needs the internet).
browser:
	command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium; }

# The oldest supported transformers and huggingface-hub (flowers_hf/core/versions.py's SUPPORTED), over the
# pinned environment: tests/test_oldest.py runs the dry GPU check with PYTHONPATH=$(OLDEST) (CI requires it).
OLDEST := .venv-oldest
OLDEST_PACKAGES := transformers huggingface-hub
$(OLDEST)/.installed: flowers_hf/core/versions.py $(STAMP)
	rm -rf $(OLDEST)
	$(BIN)/python -m pip install --quiet --no-deps --target $(OLDEST) \
		$$($(BIN)/python -c 'import sys; from flowers_hf.core.versions import SUPPORTED; \
		print(*(f"{p}=={SUPPORTED[p][0]}" for p in sys.argv[1:]))' $(OLDEST_PACKAGES))
	touch $@

oldest: $(OLDEST)/.installed

# The main job, offline: train on the built-in synthetic set from random init (under 3 min on 2 CPU cores).
quickstart: setup
	HF_HUB_OFFLINE=1 $(BIN)/python train.py --config configs/quickstart.yaml

# The demo on the quickstart model (train it first with `make quickstart`): http://127.0.0.1:7860
demo: setup
	HF_HUB_OFFLINE=1 $(BIN)/python demo/app.py --model runs/quickstart

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint browser oldest
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

constraints: setup
	{ sed -n '1,2p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v -i '^flowers'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) $(OLDEST) .pytest_cache .ruff_cache
