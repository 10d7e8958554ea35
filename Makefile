# Two commands on a fresh machine (README): `make run` and `make test`. Both set up .venv first.
# The install order matters: torch from its pinned build, then sam2 against that torch without
# build isolation and without its CUDA extension (docs/design.md, "Installation facts"), then this package.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium
CORES  ?= all

.PHONY: setup run dry-run test test-all lint bench checkpoints gpu-check clean

setup: $(STAMP)

# Debian's chromium, for the browser test of `ccl view` (playwright drives it; its own browser download
# cannot be used): a prerequisite of the tests only, so `make run` installs no browser. Needs root; without it the test is skipped with its reason (on CI it fails instead).
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	  || echo "make setup: chromium not installed (apt-get needs root); the ccl view browser test will be skipped"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	SAM2_BUILD_CUDA=0 $(BIN)/pip install --quiet --no-build-isolation "sam2==1.1.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: setup
	$(BIN)/snakemake --cores $(CORES)

dry-run: setup
	$(BIN)/snakemake -n

test: setup $(CHROMIUM)
	$(BIN)/python -m pytest -m "not slow" -q

test-all: setup $(CHROMIUM)
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check ccl tests workflow/scripts bench
	$(BIN)/snakemake --lint

bench: setup
	$(BIN)/python -m bench

# The official SAM vit_h, SAM2.1 hiera_l and OpenCLIP ViT-B-16 weights where configs/lerf_ovs.yaml and
# configs/3dovs.yaml name them (ccl.weights: resumable, checked by sha256, SHA256SUMS kept beside them).
checkpoints: setup
	$(BIN)/python -m ccl.weights --dest checkpoints

# On a machine with a CUDA GPU (no network needed once .venv is installed, README "GPU workstation"):
# builds gsplat's CUDA code for this GPU, runs tests/cuda, times every stage at real sizes, prints the
# table and writes bench/out/gpu_check.json; under 8 minutes.
gpu-check:
	@test -x $(BIN)/python || { echo "make gpu-check: no $(VENV); run make setup (or install the wheels, README 'GPU workstation')"; exit 1; }
	$(BIN)/python -m bench.gpu_check

clean:
	rm -rf results logs benchmarks .snakemake
