# `make demo` and `make test` work on a fresh clone: both install first if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow lint bench results clean

install: $(STAMP)

# Re-install only when the project's dependencies change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/kcnn train lenet5 --dataset mnist --epochs 5

test: install
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: install
	$(BIN)/python -m pytest -q -m slow

lint: install
	$(BIN)/ruff check kcnn tests benchmarks
	$(BIN)/ruff format --check kcnn tests benchmarks

# Every benchmark, each against its baseline, into benchmarks/RESULTS.md, in under 15 minutes on
# 2 cores. Two long ones are separate (each longer than the rest together):
# `PYTHONPATH=. .venv/bin/python benchmarks/run_all.py --only levers` (lever survey) and
# `... --only memory --memory-backbone vgg16` (the memory case with VGG16: about 20 minutes).
# PyTorch is the baseline of one figure: the `bench` extra installs a CPU build of it.
bench: install $(VENV)/.bench-installed
	PYTHONPATH=$(CURDIR) $(BIN)/python benchmarks/run_all.py

$(VENV)/.bench-installed: pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $@

# Every figure of experiments/RESULTS.md, experiments/README.md's table and README.md's recipe
# figures, rewritten from the kept records in experiments/records/ (see experiments/results.py).
results: install
	PYTHONPATH=$(CURDIR) $(BIN)/python experiments/results.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
