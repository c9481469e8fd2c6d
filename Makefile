# The two commands of the README: `make demo` and `make test`. Both create the
# virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# Test processes: the integration tests mostly wait on brokers and daemons, the unit tests
# compute; two workers overlap them (a 2-core CI machine: 786 s serial, 410 s with two).
PYTEST_WORKERS ?= 2
TORCH ?= 2.13.0

.PHONY: venv demo test lint unit integration deploy-check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The pinned CPU wheel first: a bare `torch` requirement would pull GBs of CUDA packages.
	# Pinned again beside the project: left free, pip's backtracking through the other
	# dependencies (boto3 for moto and s3fs) replaced it with a newer CUDA build.
	$(BIN)/python -m pip install -q torch==$(TORCH)
	$(BIN)/python -m pip install -q -e '.[test]' torch==$(TORCH)
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/streammeta demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check streammeta tests benchmarks
	$(BIN)/mypy

# pytest exits 5 when it collected no test: that is a failure too.
test: lint
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 1; fi; exit $$rc
	$(MAKE) deploy-check

# systemd-analyze, Kubernetes schemas, promtool, compose schema, hadolint (installs its tools).
deploy-check:
	bash deploy/check.sh

unit: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration" $(PYTEST_ARGS)

integration: $(STAMP)
	$(BIN)/python -m pytest -q -m integration $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
