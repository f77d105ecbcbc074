# The two commands: `make demo` and `make test`. Both bootstrap what they need first:
# a virtualenv with the locked Python packages, and the locked npm packages (the emulators).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY_OK  := $(VENV)/.bootstrap-python
NPM_OK := node_modules/.bootstrap-npm
PYTEST_ARGS ?=

.PHONY: demo test bootstrap lint local-up local-down bench bench-lambda bench-reconcile lock clean

demo: bootstrap
	$(BIN)/livekart-users local up
	$(BIN)/livekart-users local demo

test: bootstrap lint
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

bootstrap: $(PY_OK) $(NPM_OK)

$(PY_OK): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed (found " + sys.version.split()[0] + "); run: make PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(NPM_OK): package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

lint: $(PY_OK)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

local-up: bootstrap
	$(BIN)/livekart-users local up

local-down: $(PY_OK)
	$(BIN)/livekart-users local down

bench: bootstrap
	$(BIN)/python bench/run.py

bench-lambda: bootstrap
	$(BIN)/python bench/lambda_cold.py --memory 256 512 1024 --markdown

bench-reconcile: bootstrap
	$(BIN)/python bench/reconcile_bench.py --sizes 10000 100000 --markdown

# Re-lock after changing dependencies in pyproject.toml.
lock: $(PY_OK)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	{ echo '# Locked dependencies (runtime + development), installed by `make`.'; \
	  echo '# Regenerate: make lock  (after changing pyproject.toml)'; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^livekart'; } > requirements.lock

clean:
	-$(BIN)/livekart-users local down
	rm -rf $(VENV) node_modules .local-stack .pytest_cache .mypy_cache .ruff_cache .hypothesis
