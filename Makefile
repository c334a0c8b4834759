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
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

lint: $(STAMP)
	$(BIN)/ruff check .

demo: $(STAMP)
	$(BIN)/evoarena envs
	$(BIN)/evoarena evaluate dilemma_v0 --agents scripted:tit_for_tat scripted:always_defect --episodes 100
	$(BIN)/evoarena evaluate signaling_v0 --agents scripted:literal scripted:literal --episodes 1000
	$(BIN)/evoarena evaluate negotiation_v0 --agents scripted:conceder scripted:boulware --episodes 1000

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
