# Two commands do everything on a fresh machine with only python3 + pip:
#   make demo   -- set up, then simulate the bundled scenario (PyTorchJob + vLLM on seven real 8-GPU boards)
#                  under gputopo, the default scheduler, BestFit and Random; chart in out/demo-simulate.png
#   make test   -- set up, then lint, type-check, check layering and run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint typecheck layers unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/gputopo simulate --seeds 42..51 --chart out/demo-simulate.png

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

layers: $(STAMP)
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest -n 2 -q

test: lint typecheck layers unit

bench: $(STAMP)
	$(BIN)/python bench/bench_core.py
	$(BIN)/python bench/bench_agent_writes.py
	$(BIN)/python bench/bench_extender.py
	$(BIN)/python bench/bench_annotation_size.py
	$(BIN)/python bench/bench_simulate.py
	$(BIN)/python bench/bench_audit_cluster.py

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache .hypothesis
