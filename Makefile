# Two commands do everything on a fresh machine with only python3 + pip:
#   make demo   -- set up, then simulate the bundled scenario (PyTorchJob + vLLM on seven real 8-GPU boards)
#                  under gputopo, the default scheduler, BestFit and Random; chart in out/demo-simulate.png
#   make test   -- set up, then lint, type-check, check layering and run the test suite
# End-to-end against a real control plane (needs Go + the Go module proxy; docs/e2e.md):
#   make kube   -- build or reuse kube-apiserver/kube-scheduler/kubectl/etcd; prints their directory last
#   make e2e    -- make kube, then the scenarios marked `e2e` (agent, scheduling, failure, throughput)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint typecheck layers unit bench clean kube e2e

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
	$(BIN)/pytest -n 2 -q -m "not e2e"

test: lint typecheck layers unit

kube:
	@bash hack/kube/build.sh

# One scenario: make e2e E2E_ARGS="-k scheduling"   (or E2E_ARGS=tests/e2e/test_e2e_agent.py)
# build.sh prints the directory as its last stdout line (its progress goes to stderr). No pipe: a failed
# build stops here with its own status, and pytest never starts with an empty E2E_KUBE_BIN (which would
# make tests/e2e/kubebin.py build a second time).
e2e: $(STAMP)
	@out=$$(bash hack/kube/build.sh) || exit $$?; \
	dir=$$(printf '%s\n' "$$out" | tail -n1); \
	[ -d "$$dir" ] || { echo "make e2e: hack/kube/build.sh printed no directory (got '$$dir')" >&2; exit 1; }; \
	E2E_KUBE_BIN=$$dir $(BIN)/pytest -q -p no:xdist -m e2e tests/e2e $(E2E_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/bench_core.py
	$(BIN)/python bench/bench_agent_writes.py
	$(BIN)/python bench/bench_extender.py
	$(BIN)/python bench/bench_annotation_size.py
	$(BIN)/python bench/bench_simulate.py
	$(BIN)/python bench/bench_audit_cluster.py
	$(BIN)/python bench/bench_bandwidth.py
	$(BIN)/python bench/bench_reliability.py

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache .hypothesis
