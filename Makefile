# Two commands do all the set-up on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
PYTEST_ARGS ?=

.PHONY: serve test model bench clean system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Server + model preparation (PyTorch is used once, to convert the weights; the server runs on ONNX Runtime).
$(VENV)/.serve-deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[prepare]"
	touch $@

$(VENV)/.test-deps: pyproject.toml $(VENV)/.serve-deps
	$(BIN)/pip install -q -e ".[prepare,test,lint]"
	touch $@

$(VENV)/.lint-deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[lint]"
	touch $@

model: $(VENV)/.serve-deps
	$(BIN)/servoscope model prepare

serve: model
	$(BIN)/servoscope serve --host 127.0.0.1 --port $(PORT)

# Debian packages the tests drive: chromium (dashboard test), prometheus + promtool (deploy/ test),
# haproxy (the balancer of servoscope deploy ray, and its test).
# Installed only when missing; a Prometheus or HAProxy daemon that a package's postinst may start is stopped.
SYSTEM_BINS := /usr/bin/chromium /usr/bin/prometheus /usr/bin/promtool /usr/sbin/haproxy
SUDO := $(shell [ "$$(id -u)" = 0 ] || ! command -v sudo >/dev/null 2>&1 || echo sudo)

system-deps:
	@missing=""; for b in $(SYSTEM_BINS); do [ -x "$$b" ] || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing chromium, prometheus and haproxy (missing:$$missing)"; \
		running=$$({ pgrep -x prometheus; pgrep -x haproxy; } || true); \
		$(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium prometheus haproxy || exit 1; \
		for pid in $$({ pgrep -x prometheus; pgrep -x haproxy; } || true); do \
			case " $$running " in *" $$pid "*) ;; *) echo "stopping the daemon the package started ($$pid)"; \
				$(SUDO) kill $$pid;; esac; \
		done; \
	fi

test: system-deps $(VENV)/.test-deps model perf-analyzer
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The edit-test loop (~20 s on 2 cores): pure unit tests and in-process app tests, no real model,
# server or drill. conftest marks every test that uses the model_repository fixture `model`.
.PHONY: test-fast
test-fast: $(VENV)/.test-deps
	$(BIN)/python -m pytest -m "not model and not drill" $(PYTEST_ARGS)

bench: $(VENV)/.test-deps model
	$(BIN)/python bench/serve.py

# Opt-in, never part of `make test`: servoscope beside Triton (PyTriton), Ray Serve, LitServe and
# the naive server; each peer in its own environment under bench/peers/.venvs/, built on first use.
PEERS_ARGS ?=
.PHONY: bench-peers
bench-peers: $(VENV)/.test-deps model
	$(BIN)/python bench/peers/run.py $(PEERS_ARGS)

# perf_analyzer (Triton's load generator, from tritonclient 2.48's wheel) and the libraries it loads.
PERF_ANALYZER := .tools/perf_analyzer/perf_analyzer
.PHONY: perf-analyzer
perf-analyzer: $(PERF_ANALYZER)
$(PERF_ANALYZER): | $(VENV)/.serve-deps
	$(BIN)/python -m servoscope.loadgen.perf_analyzer install

# The committed server/protos/*_pb2.py, regenerated from the .proto files beside them.
.PHONY: protos
protos: $(VENV)/.serve-deps
	$(BIN)/pip install -q -e ".[protos]"
	$(BIN)/python -m grpc_tools.protoc -I. --python_out=. servoscope/server/protos/model_config.proto servoscope/server/protos/grpc_service.proto

clean:
	rm -rf $(VENV) models .pytest_cache

# Lint, format and type checks (settings in pyproject.toml); CI runs this before `make test`.
.PHONY: lint
lint: $(VENV)/.lint-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
