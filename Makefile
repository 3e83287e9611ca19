# fabook: `make book` builds the book, `make test` tests everything (see README.md).
# Variables: SCALE=smoke|cpu|paper (book only), PYTHON=python3, TORCH_PINS (installed only if torch is missing),
# CONSTRAINTS (the tested versions every install uses; CI tests on them), BOOK_DATA (the data sets `make book`
# gets before any notebook runs: full Fashion-MNIST, except at the smoke scale, whose sample ships with fabook).
PYTHON ?= python3
SCALE ?= cpu
BOOK_DATA ?= $(if $(filter smoke,$(SCALE)),,fashion-mnist)
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
CONSTRAINTS ?= constraints.txt
FABOOK_FIGURES ?= $(CURDIR)/figures
FABOOK_RUNS ?= $(CURDIR)/runs
export FABOOK_FIGURES FABOOK_RUNS

PIP = $(PYTHON) -m pip
BOOK = $(PYTHON) -m fabook.book
NBVAL = $(PYTHON) -m pytest --nbval-lax --nbval-current-env --nbval-sanitize-with nbval_sanitize.cfg

.PHONY: help install book html test test-newcomer lint clean constraints

help:
	@echo "make book [SCALE=cpu]  install, execute every notebook at SCALE, build and check _build/html"
	@echo "make test              install, unit tests, notebooks at smoke scale + nbval, build and check"
	@echo "make html              rebuild and check _build/html from the already executed notebooks"
	@echo "make test-newcomer     unit tests as on a fresh machine: no data package, no browser (CI runs it)"
	@echo "make install | lint | clean | constraints (rewrite constraints.txt from this environment)"

install:
	$(PYTHON) -c "import torch, torchvision" 2>/dev/null || $(PIP) install -c $(CONSTRAINTS) $(TORCH_PINS)
	$(PIP) install -c $(CONSTRAINTS) -e '.[book,dev]'

# The data first: downloaded, else the Debian package, else an error within seconds naming each way.
book: install
	$(PYTHON) -m fabook.data ensure $(BOOK_DATA)
	$(BOOK) --scale $(SCALE) --check

html:
	$(BOOK) --no-execute --check

# The smoke notebooks train into a fresh folder, so results from earlier runs can't stand in for this code's.
test: export FABOOK_RUNS = $(CURDIR)/_build/test-runs
test: install
	$(PYTHON) -m pytest
	rm -rf _build/executed _build/test-runs
	$(BOOK) --scale smoke --no-build
	$(NBVAL) _build/executed/*.ipynb
	$(BOOK) --scale smoke --no-execute --check

# A newcomer's machine: an empty data root, no Debian data folder, no headless browser (hidden, not removed).
test-newcomer: install
	rm -rf _build/newcomer
	FABOOK_DATA=$(CURDIR)/_build/newcomer/data FABOOK_DEBIAN_DATA=$(CURDIR)/_build/newcomer/debian \
		FABOOK_BROWSER=none $(PYTHON) -m pytest -q

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

# After `make test` passes with newer versions: pin them as the tested set.
constraints:
	$(PYTHON) .ci/constraints.py $(CONSTRAINTS)

clean:
	rm -rf _build
