# The README's two commands: `make demo` (the whole pipeline on the embedded defaults) and
# `make test`. Both create or refresh the virtualenv themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch 2.13; a GPU user keeps the torch they have (any torch >= 2.4 works).
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

DEMO := runs/demo
DEMO_STORE := $(DEMO)/chrX_demo.had.zarr
DEMO_RUN := $(DEMO)/student

.PHONY: install demo test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $@

# Extract -> pretrain -> eval on the embedded 9.5 Mb slice of human chrX, the embedded teacher and
# the UCI splice-junction set; sized to finish in about 10 minutes (install included) on 2 CPU cores.
demo: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/had-cache extract --fasta demo --teacher demo --out $(DEMO_STORE) \
		--max-windows 1024 --batch-size 32
	$(BIN)/had-train pretrain --cache $(DEMO_STORE) --out $(DEMO_RUN) \
		--steps 80 --batch-size 8 --lr 2e-3 --save-every 40
	$(BIN)/had-train eval --checkpoint $(DEMO_RUN) --task splice --epochs 3

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf runs .pytest_cache
