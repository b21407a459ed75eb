# civsync developer entry points. `make run` and `make test` work on a fresh Debian machine:
# they install the system packages, the Python environment and start the local services.

PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the local services and the tests need (Java and Maven for Kafka and the registry).
# Capture reads pgoutput, built into PostgreSQL; wal2json is only bench.ceilings' comparison.
APT_PACKAGES := postgresql-15 postgresql-15-wal2json maven openjdk-17-jre-headless

.PHONY: run test bench bench-compare test-unit lint setup system-packages venv services-up services-down services-status clean

run: setup                        ## the demo: services, both stores, 10,000 people, the engine, a summary
	$(BIN)/civsync demo

test: setup lint services-up      ## lint, every test against the real services, benchmark smoke runs
	$(BIN)/pytest
	$(BIN)/python -m bench.capture --smoke
	$(BIN)/python -m bench.e2e --smoke
	$(BIN)/python -m bench.reconcile --smoke
	$(BIN)/python -m bench.apply_path --smoke
	$(BIN)/python -m bench.encode --smoke
	$(BIN)/python -m bench.initial_sync --smoke
	$(BIN)/python -m bench.sidebyside --smoke  # fetches Kafka Connect and Debezium once (about 154 MB)
	$(BIN)/python -m bench.faults --smoke --only kafka-kill  # services of its own; tests/faults ran every fault

bench: setup services-up          ## the full benchmarks (minutes; on demand, never in CI)
	$(BIN)/python -m bench.capture
	$(BIN)/python -m bench.e2e
	$(BIN)/python -m bench.reconcile
	$(BIN)/python -m bench.apply_path
	$(BIN)/python -m bench.encode
	$(BIN)/python -m bench.faults

bench-compare: setup services-up  ## civsync against Debezium and the ceilings, one run (about 25 min)
	$(BIN)/python -m bench.sidebyside --runs 3

test-unit: venv                   ## the unit tests only: no services
	$(BIN)/pytest tests/unit

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

setup: system-packages venv

system-packages:
	@missing=""; for pkg in $(APT_PACKAGES); do \
	  dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,lint,bench]'
	touch $@

services-up: venv
	$(BIN)/civsync services up

services-down:
	@[ -x $(BIN)/civsync ] && $(BIN)/civsync services down || true

services-status: venv
	$(BIN)/civsync services status

clean: services-down
	rm -rf .run $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info
