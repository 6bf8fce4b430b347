# make train  - install if needed, pretrain a small GPT on Tiny Shakespeare (the CPU speedrun
#               record, configs/speedrun.yaml), print a sample
# make test   - install if needed, run the test suite
# make test-fast - the tests that train nothing and start no process (pytest -m "not slow")
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The torch build to install. torch==2.13.0 is a CPU wheel where this project is developed.
# Elsewhere pick the build from PyTorch's own index, e.g.
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cpu     (CPU-only machine)
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cu128   (CUDA 12.8)
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
# Real data sets beside the checkout, when they are there, save the download.
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)/tinyshakespeare/input.txt),)
export MINIGPT_DATA_DIR ?= $(SHARED_DATA)
endif

.PHONY: install install-dev train test test-fast tensorboard lint format bench clean

# The package alone is what training needs; the dev tools (pytest, ruff, mypy, and transformers,
# peft, openai, playwright for the tests) come with the targets that use them. Lightning imports
# torchmetrics, which imports transformers whenever it is installed: ~1 s more for every
# `minigpt fit` to start (benchmarks/README.md, "The same recipe as nanoGPT").
$(BIN)/minigpt: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev: $(BIN)/minigpt
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/minigpt

install-dev: $(VENV)/.dev

train: install
	$(BIN)/minigpt fit --config configs/speedrun.yaml
	@run=$$(ls -td lightning_logs/version_*/checkpoints | head -n 1); \
	echo "--- sample from $$run/last.ckpt ---"; \
	$(BIN)/minigpt generate --ckpt_path $$run/last.ckpt --prompt "ROMEO:" --max_new_tokens 500 --seed 1

test: install-dev
	$(BIN)/pytest

test-fast: install-dev
	$(BIN)/pytest -m "not slow"

tensorboard: install
	$(BIN)/tensorboard --logdir lightning_logs

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install-dev
	$(BIN)/python benchmarks/lightning_overhead.py
	$(BIN)/python benchmarks/train_figures.py --config configs/pretrain-small.yaml
	$(BIN)/python benchmarks/kv_cache.py --threads 1

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache .mypy_cache benchmarks/out
