# `make demo` and `make test` work on a fresh clone: both install first if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow lint bench clean

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

# Every benchmark against its baselines (shuffled, paired repeats: benchmarks/protocol.py) into
# benchmarks/RESULTS.md, results.json and README's marked figures, in under 15 minutes on 2 cores;
# on a machine with a GPU, TensorFlow and PyTorch both run there and the GPU section
# (benchmarks/gpu.py) runs too. Two long ones are separate:
# `PYTHONPATH=. .venv/bin/python benchmarks/run_all.py --only levers` (lever survey) and
# `... --only memory --memory-backbone vgg16` (the memory case with VGG16).
# PyTorch is the baseline of several figures: the `bench` extra installs it.
bench: install $(VENV)/.bench-installed
	PYTHONPATH=$(CURDIR) $(BIN)/python benchmarks/run_all.py

$(VENV)/.bench-installed: pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $@

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
