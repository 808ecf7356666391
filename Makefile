# goldgate — two commands do all set-up: `make run` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP  := $(VENV)/.installed

.PHONY: run test venv lint typecheck security pytest lock bench clean

# The venv is rebuilt only when the lock or the package metadata changes.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/goldgate run --usecase fx $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# No new secrets in the repository (mark a false positive with an inline `pragma: allowlist secret`, or refresh
# the audited .secrets.baseline with `detect-secrets scan > .secrets.baseline`) and no high-severity bandit finding.
# tests/golden/*.json are left out: they are sha256 fingerprints of table columns, high-entropy by design.
security: $(STAMP)
	$(BIN)/detect-secrets-hook --baseline .secrets.baseline $$(git ls-files --cached --others --exclude-standard | grep -v '^tests/golden/.*\.json$$')
	$(BIN)/bandit -q -r src -lll

pytest: $(STAMP)
	$(BIN)/pytest --cov --cov-report=term --cov-report=xml:coverage.xml $(PYTEST_ARGS)

test: lint typecheck security pytest

# Re-resolve the lock after editing pyproject.toml dependencies.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra spark --python-version 3.11 \
	  --python-platform x86_64-unknown-linux-gnu --no-header -o requirements.lock

# Benchmarks write docs/benchmarks.md and benchmarks/results/; they take minutes, never part of `make test`.
bench: $(STAMP)
	$(BIN)/python benchmarks/layers.py --sizes 100000 1000000 10000000 --repeat 3 --engines duckdb spark --spark-sizes 100000 1000000 --scratch $(or $(BENCH_DIR),/tmp/goldgate-bench)
	$(BIN)/python benchmarks/silver.py --rows 1000000 10000000 --repeat 3 --scratch $(or $(BENCH_DIR),/tmp/goldgate-bench)
	$(BIN)/python benchmarks/panel.py --sizes 100000 1000000 10000000 --repeat 3 --scratch $(or $(BENCH_DIR),/tmp/goldgate-bench)/panel
	$(BIN)/python benchmarks/crm.py --sizes 100000 1000000 10000000 --repeat 3 --scratch $(or $(BENCH_DIR),/tmp/goldgate-bench)/crm
	$(BIN)/python benchmarks/profile_features.py compare --workspace $(or $(BENCH_DIR),/tmp/goldgate-bench)/panel/ws_10000000
	$(BIN)/python benchmarks/profile_features.py profile --workspace $(or $(BENCH_DIR),/tmp/goldgate-bench)/panel/ws_10000000
	$(BIN)/python benchmarks/runs.py --root $(or $(BENCH_DIR),/tmp/goldgate-bench)/runs --repeat 3
	$(BIN)/python benchmarks/scoring.py --workspace $(or $(BENCH_DIR),/tmp/goldgate-bench)/runs/fx --scratch $(or $(BENCH_DIR),/tmp/goldgate-bench)/panel
	$(BIN)/python benchmarks/serving.py --workspace $(CURDIR)/workspace
	$(BIN)/python benchmarks/spark.py
	$(BIN)/python benchmarks/threads.py
	@# 100M rows out of core (about 15-30 min, ~15 GB of disk): make bench BENCH_100M=1
	if [ -n "$(BENCH_100M)" ]; then $(BIN)/python benchmarks/panel.py --sizes 100000000 --repeat 1 \
	  --impls goldgate_fx --memory-limit 2GB --tag 100m --timeout 2700 --scratch $(or $(BENCH_DIR),/tmp/goldgate-bench)/panel; fi
	$(BIN)/python benchmarks/combine.py

clean:
	rm -rf $(VENV) workspace .pytest_cache .mypy_cache .ruff_cache coverage.xml .coverage
