# tern: the two README commands are `make demo` and `make test`; each sets itself up first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export AMARANTH_USE_YOSYS := builtin
export YOWASP_CACHE_DIR ?= $(HOME)/.cache/yowasp

.PHONY: setup demo test lint bench verilog-synthesis-record train-micro train-demo clean

setup:
	@bash scripts/setup.sh

# make demo DEMO_ARGS="--preset stdlib -n 16": the bigger model, weights from simulated SDRAM.
DEMO_ARGS ?=
demo: setup
	$(PY) -m tern_fpga.commands.demo $(DEMO_ARGS)

test: setup
	$(VENV)/bin/pytest -n 2 --dist loadgroup -q tests

# ruff, and the import-linter layers (tests/test_layers.py runs lint-imports on the package as a
# wheel lays it out: from the checkout, where hw/ sim/ host/ quant/ sit beside tern_fpga/, its
# graph builder cannot find them and a plain lint-imports says 'Missing layer').
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q -p no:xdist tests/test_layers.py

bench: setup
	$(VENV)/bin/tern bench

# Synthesise every file `tern verilog` writes for real and rewrite the record that lets the test
# skip unchanged files (tests/test_verilog_synthesis.py; about 17 minutes on two cores).
verilog-synthesis-record: setup
	TERN_RECORD_SYNTHESIS=1 $(VENV)/bin/pytest -n 2 -q tests/test_verilog_synthesis.py \
		-k every_written_file

# Retrain the shipped models (on a CUDA GPU if there is one); the shipped ones stay untouched.
train-micro: setup
	$(VENV)/bin/tern train --preset micro --device auto --compile -o out/micro

train-demo: setup
	$(VENV)/bin/tern train --preset demo --device auto --compile -o out/demo

clean:
	rm -rf build sim_build .pytest_cache
