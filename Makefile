# Halo Bestie backend. `make dev` runs everything; `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install dev test lint deploy-check bench bench-profile bench-sessions bench-realtime routes migrate clean

install: $(STAMP)

# Re-installs only when the project's dependencies change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

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

routes: install
	$(BIN)/python -m runtime routes

migrate: install
	$(BIN)/python -m runtime migrate

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache build *.egg-info
