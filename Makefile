# Halo Bestie backend. `make dev` runs everything; `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install lock lock-check dev test lint deploy-check bench bench-profile bench-sessions bench-realtime soak routes migrate clean

install: $(STAMP)

# Exactly the versions and files in requirements-dev.lock (every one checked against its sha256),
# then the project itself, editable, adding nothing. Re-installs only when a lock or pyproject changes.
$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# The two lock files come from pyproject.toml, for the image's platform (CPython 3.11, Linux
# x86_64), whatever machine runs this. The dev lock is resolved first and constrains the runtime
# one, so both name the same version of every runtime dependency. An existing lock's versions are
# kept unless pyproject.toml no longer allows them: `make lock LOCK_ARGS=--upgrade` moves every
# dependency to its newest allowed release, `LOCK_ARGS="--upgrade-package falcon"` one of them.
LOCK_FLAGS := --quiet --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	--custom-compile-command "make lock" $(LOCK_ARGS)
UV := $(abspath $(BIN))/uv
# $(1): the directory holding pyproject.toml and the two lock files.
define compile_locks
cd $(1) && $(UV) pip compile $(LOCK_FLAGS) pyproject.toml --extra dev -o requirements-dev.lock \
  && $(UV) pip compile $(LOCK_FLAGS) pyproject.toml -c requirements-dev.lock -o requirements.lock
endef

lock: install
	$(call compile_locks,.)

# Fails when pyproject.toml changed without `make lock`: the locks compiled again from copies of
# them (their versions preferred, as `make lock` does) must come out byte for byte the same.
lock-check: install
	tmp=$$(mktemp -d) && cp pyproject.toml requirements.lock requirements-dev.lock $$tmp/ \
	  && $(call compile_locks,$$tmp) \
	  && cd $(CURDIR) && diff -u requirements-dev.lock $$tmp/requirements-dev.lock \
	  && diff -u requirements.lock $$tmp/requirements.lock \
	  || { echo "requirements*.lock are out of date with pyproject.toml: run make lock"; rm -rf $$tmp; exit 1; }; \
	rm -rf $$tmp

dev: install
	$(BIN)/python -m runtime dev

# Parallel (a database per test, a Valkey database per worker). The suite mostly waits on servers
# and subprocesses, so 4 workers beat one per core on 2 cores (118 s against 162 s; serially 241 s).
# TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 4
test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

lint: install deploy-check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The image, compose file and manifests, checked without a Docker engine or a cluster.
deploy-check: install
	$(BIN)/hadolint Dockerfile
	tmp=$$(mktemp -d) && cp docker-compose.staging.yml $$tmp/ && cp .env.staging.example $$tmp/.env.staging \
	  && sed -i 's/^POSTGRES_PASSWORD=$$/POSTGRES_PASSWORD=check/' $$tmp/.env.staging \
	  && $(BIN)/docker-compose -f $$tmp/docker-compose.staging.yml --env-file $$tmp/.env.staging config --quiet \
	  && rm -rf $$tmp
	$(BIN)/kubernetes-validate --strict --quiet $(filter-out deploy/k8s/kustomization.yaml,$(wildcard deploy/k8s/*.yaml))
	if command -v kubectl >/dev/null; then kubectl kustomize deploy/k8s | $(BIN)/kubernetes-validate --strict --quiet -; fi

bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# py-spy samples of the workers while wrk loads each hot endpoint: the top frames.
bench-profile: install
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python bench/profile.py $(BENCH_ARGS)

# N concurrent chat sessions through pairing, messages and closing: deadline lateness, messages/s.
bench-sessions: install
	$(BIN)/python bench/sessions.py $(BENCH_ARGS)

# The WebSocket gateway: idle sockets (memory, CPU) and active chat pairs (end-to-end latency), then
# as many pairs again beside 100 hostile sockets flooding frames (BENCH_ARGS="--attack 0": no attack).
bench-realtime: install
	$(BIN)/python bench/realtime.py $(BENCH_ARGS)

# A long mixed load (bench/soak.py; SOAK_ARGS passes its options).
soak: install
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

routes: install
	$(BIN)/python -m runtime routes

migrate: install
	$(BIN)/python -m runtime migrate

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache build *.egg-info
