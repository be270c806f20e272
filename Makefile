# CI runs these targets (.ci/run runs `make install test`, the README's test command).
#   make install      build the Rust extension with maturin (through pip) and install tct + extras
#   make lint         rustfmt, clippy, ruff check, ruff format --check
#   make test-rust    cargo test (the optimised `fast` profile: release speed, quicker to build)
#   make test-python  pytest (whole corpus included)
#   make test         lint + test-rust + test-python
#   make test-fast    pytest without the `slow` whole-corpus tests

PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
CARGO ?= cargo
# Every clippy warning fails the build.
CLIPPY_FLAGS := -- -D warnings

.PHONY: install lint fmt test test-rust test-python test-fast clean

# Editable install: python/ stays the live source and maturin builds the extension (release
# profile) into python/tct/. --no-build-isolation uses the maturin installed just before.
install:
	$(PIP) install 'maturin>=1.5,<2' ruff
	$(PIP) install --no-build-isolation -e '.[test,train,bench,hf]'

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --all-features $(CLIPPY_FLAGS)
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

# Rewrite formatting in place (what `lint` checks).
fmt:
	$(CARGO) fmt --all
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

test-rust:
	$(CARGO) test --profile fast

test-python:
	$(PYTHON) -m pytest -q

test-fast:
	$(PYTHON) -m pytest -q -m "not slow"

test: lint test-rust test-python

clean:
	$(CARGO) clean
	rm -f python/tct/_tct*.so
	rm -rf .pytest_cache .ruff_cache .hypothesis
