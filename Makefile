# graphrec: `make demo` runs the main job, `make test` runs the test suite.
# Both create .venv on first use: torch==2.13.0 first (the CPU wheel), then the rest.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   ?= out/quickstart

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,dgl]'
	touch $(STAMP)

# The main job: the whole pipeline on synthetic Pinterest-like data (configs/quickstart.yaml):
# graph -> split -> TwHIN + PinSage on local Ray -> inference -> export -> FAISS -> report.md
demo: $(STAMP)
	$(VENV)/bin/graphrec run configs/quickstart.yaml --out $(DEMO) --overwrite

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/build_graph.py

clean:
	rm -rf out .pytest_cache
