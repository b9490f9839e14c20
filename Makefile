# Set-up and the two everyday jobs. Each target creates or reuses .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
# A CPU build on this kind of machine; on a GPU machine install your CUDA torch first (any 2.11-2.13).
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
# pytest workers: one per core of a 2-core CI machine (each runs torch on one thread)
TEST_WORKERS ?= 2
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format benchmark gpu-check clean-demo

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test,comet,bleurt,judge,benchmarks,loggers,lora,gguf]"
	# unbabel-comet pins jsonargparse/numpy/torchmetrics versions that break LightningCLI: install it alone
	$(BIN)/python -m pip install -q --no-deps unbabel-comet==2.2.7
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python -m lightning_xllama prepare-demo
	$(BIN)/python -m lightning_xllama fit --config configs/demo.yaml

test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS)

# ruff: lint (pyflakes, pycodestyle, import order) and the formatter's check, line length 100
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

benchmark: install
	$(BIN)/python benchmarks/train_throughput.py

# One GPU, offline, where torch, lightning and transformers are installed already (no venv, no
# install): PASS/FAIL per check. GPU_CHECK_ARGS=--dry-run runs it on CPU; --full, the whole table.
gpu-check:
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(PYTHON) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

clean-demo:
	rm -rf artifacts/demo
