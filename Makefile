# Two commands do all the set-up on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?= 8000
PYTEST_ARGS ?=

.PHONY: serve test model bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Server + model preparation (PyTorch is used once, to convert the weights; the server runs on ONNX Runtime).
$(VENV)/.serve-deps: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[prepare]"
	touch $@

$(VENV)/.test-deps: pyproject.toml $(VENV)/.serve-deps
	$(BIN)/pip install -q -e ".[prepare,test]"
	touch $@

model: $(VENV)/.serve-deps
	$(BIN)/servoscope model prepare

serve: model
	$(BIN)/servoscope serve --host 127.0.0.1 --port $(PORT)

test: $(VENV)/.test-deps model
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.test-deps model
	$(BIN)/python bench/serve.py

clean:
	rm -rf $(VENV) models .pytest_cache
