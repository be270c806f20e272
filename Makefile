# CI runs these targets (.ci/run runs `make install test`, the README's test command).
#   make install      build the Rust extension with maturin (through pip) and install tct + extras
#   make lint         rustfmt, clippy, ruff check, ruff format --check, mypy --strict, stubtest
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
	$(PIP) install 'maturin>=1.5,<2' ruff 'mypy>=1.10'
	@# An editable install under the package's former distribution name, `tct`, would shadow
	@# this one (its .pth file sorts first); pip only warns when it is absent.
	$(PIP) uninstall -y tct
	$(PIP) install --no-build-isolation -e '.[test,train,bench,eval,hf]'

# mypy.stubtest checks the hand-written stubs (_tct.pyi) against the built extension.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --all-features $(CLIPPY_FLAGS)
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy --strict python/tct
	$(PYTHON) -m mypy.stubtest tct._tct

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

# Reproduce the shipped tokenizer file from ../shared/data: the whole workflow corpus (the
# `json` field of each record), one group per repository, the library's defaults. Training is
# deterministic (no wall-clock times in the file), so the result is compared byte for byte.
SHARED_DATA ?= ../shared/data
BUNDLED := python/tct/data/github-workflow.tct.json
BUNDLED_OUT ?= target/github-workflow.tct.json
.PHONY: bundled-tokenizer
bundled-tokenizer:
	@mkdir -p $(dir $(BUNDLED_OUT))
	$(PYTHON) -m tct.cli_train $(SHARED_DATA)/schemas/github-workflow.json \
		$(SHARED_DATA)/workflows/workflows.jsonl.gz $(BUNDLED_OUT) \
		--field json --group-field repo --name github-workflow --quiet
	cmp $(BUNDLED_OUT) $(BUNDLED) && echo "$(BUNDLED_OUT) is byte-identical to $(BUNDLED)"
