# The two commands a newcomer types: `make demo` and `make test`.
# Both create (once) and reuse a local virtual environment in .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench lock clean

# Every dependency at the exact version of requirements.lock (`make lock` writes it again).
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[test]'
	touch $(STAMP)

# Each first installs the Debian packages it needs when they are missing (scripts/system-deps),
# then makes the venv.
demo:
	PYTHON=$(PYTHON) scripts/system-deps demo
	$(MAKE) --no-print-directory $(STAMP)
	$(BIN)/smsa-demo

test:
	PYTHON=$(PYTHON) scripts/system-deps test
	$(MAKE) --no-print-directory $(STAMP)
	$(BIN)/python -m pytest -n auto --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy agent hub firmware_sim protocol hardware demo smsa

bench: $(STAMP)
	$(BIN)/python -m bench

# After changing a dependency in pyproject.toml: resolve `.[test]` afresh in a throwaway venv and
# keep requirements.lock's comment lines.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[test]'
	{ grep '^#' requirements.lock; .lock-venv/bin/python -m pip freeze --exclude-editable; } \
		> requirements.lock.new
	mv requirements.lock.new requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) build *.egg-info
