# The two set-up commands of the README: `make demo` (the main job) and `make test`.
# Both build .venv with everything they need on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# Test processes (pytest-xdist): most tests are short and bound by Python and tracing, so two
# processes on two cores cut the wall time; `--dist loadfile` keeps each file's module
# fixtures (an exported model, a trained teacher) in one process; `--no-loadscope-reorder`
# hands the files out in collection order (tests/conftest.py puts the longest first) instead
# of xdist's default, most tests first, which left the one-test, three-minute real-data file
# for last. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2

.PHONY: venv demo test clean

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,demo]"
	touch $@

venv: $(BIN)/.installed

# --overwrite: a second `make demo` replaces the first one's results in runs/demo.
demo: venv
	$(BIN)/keras-kd demo --overwrite

# pytest exits 5 when it collects no test (with xdist too): make (and so .ci/run) then fails.
test: venv
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache *.egg-info
