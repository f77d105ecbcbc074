# The two commands: `make demo` and `make test`. Both bootstrap what they need first: a
# virtualenv with the locked Python packages (each file checked against its sha256 in the
# lock: pip --require-hashes; the package itself installed editable), then the
# emulators, through the package's own code, exactly as `livekart-users local up` would for a
# pipx user: the npm lockfile in src/livekart_users/local/npm/ is installed (npm ci, verified)
# into the per-user cache, or into $LIVEKART_EMULATORS_DIR.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY_OK  := $(VENV)/.bootstrap-python
PYTEST_ARGS ?=
# The JavaScript clients the suite drives (tests/js/): installed from their lockfile.
JS_OK  := tests/js/node_modules/.package-lock.json

.PHONY: demo test bootstrap emulators lint local-up local-down bench bench-lambda bench-reconcile bench-cli bench-endpoint bench-console lock clean

demo: bootstrap
	$(BIN)/livekart-users local demo

test: bootstrap lint
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

bootstrap: $(PY_OK) emulators $(JS_OK)

$(PY_OK): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed (found " + sys.version.split()[0] + "); run: make PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

emulators: $(PY_OK)
	$(BIN)/livekart-users local install

# npm ci: exactly the lockfile's versions, each checked against its integrity hash; works
# offline from npm's cache once fetched. No install scripts run.
$(JS_OK): tests/js/package-lock.json tests/js/package.json
	cd tests/js && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

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

bench-cli: bootstrap
	$(BIN)/python bench/cli_bench.py

bench-console: bootstrap
	$(BIN)/python bench/console_bench.py --users 10000 --markdown

bench-endpoint: bootstrap
	$(BIN)/python bench/cognito_endpoint.py --markdown

# Re-lock after changing dependencies in pyproject.toml: every pin with the sha256 of each of
# its files on the index, so that `make` installs exactly those files (--require-hashes).
# Pins already in the lock are kept; upgrade with `make lock LOCK_ARGS=--upgrade`.
LOCK_ARGS ?=
lock: $(PY_OK)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check pip-tools
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --extra dev --generate-hashes \
	  --strip-extras --no-emit-index-url --no-emit-find-links $(LOCK_ARGS) \
	  -o requirements.lock pyproject.toml
	cp requirements.lock src/livekart_users/deploy/requirements.lock  # what `package` verifies

clean:
	-$(BIN)/livekart-users local down --wipe
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
