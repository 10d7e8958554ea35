# Two commands on a fresh machine (README): `make run` and `make test`. Both set up .venv first.
# The install order matters: torch from its pinned build, then sam2 against that torch without
# build isolation and without its CUDA extension (docs/design.md, "Installation facts"), then this package.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium
CORES  ?= all

.PHONY: setup run dry-run test test-all lint bench checkpoints gpu-check wheels clean

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

# On a machine with a CUDA GPU (no network needed, README "GPU workstation"): builds gsplat's CUDA code
# for this GPU, runs tests/cuda, times every stage at real sizes, prints the table and writes
# bench/out/gpu_check.json; under 8 minutes. GPU_CHECK_PYTHON names another interpreter than .venv's,
# such as a venv over the machine's own torch with the wheels of `make wheels` installed in it. Its bin/
# goes first on PATH: torch builds gsplat with the `ninja` found there, which the ninja wheel puts there.
GPU_CHECK_PYTHON ?= $(BIN)/python
gpu-check:
	@test -x "$(GPU_CHECK_PYTHON)" || { echo "make gpu-check: no interpreter $(GPU_CHECK_PYTHON): run make setup, or install the wheels of make wheels and name that Python, e.g. make gpu-check GPU_CHECK_PYTHON=.gpu-venv/bin/python (README 'GPU workstation')"; exit 1; }
	@$(GPU_CHECK_PYTHON) -c "import torch, ccl, gsplat, segment_anything, sam2, open_clip, snakemake, pytest" \
	  || { echo "make gpu-check: $(GPU_CHECK_PYTHON) lacks the module named above: torch is the machine's own (or make setup's), the rest are the wheels of make wheels (README 'GPU workstation')"; exit 1; }
	PATH="$(abspath $(dir $(GPU_CHECK_PYTHON))):$$PATH" $(GPU_CHECK_PYTHON) -m bench.gpu_check

# For a GPU machine that brings its own torch and has no network (README "GPU workstation"): every wheel
# this project needs beyond torch, torchvision and what they require, at .venv's versions, for CPython
# PYTHON_VERSION on PLATFORM (manylinux_2_28: glibc >= 2.28), into WHEELS_DIR (tools/offline_wheels.py;
# WHEELS_MAX_MIB overrides its 64 MiB limit). MACHINE_PACKAGES: the GPU machine's
# `python3 -m pip list --format=freeze`, whose packages in a fitting version are left out; WITHOUT: optional
# packages to leave out as well (pycolmap, av, viser; each then needs installing for the one part that uses it).
PYTHON_VERSION ?= 3.12
PLATFORM       ?= manylinux_2_28_x86_64
WHEELS_DIR     ?= wheels
wheels: setup
	$(BIN)/python -m tools.offline_wheels --python-version $(PYTHON_VERSION) --platform $(PLATFORM) \
	  --dest $(WHEELS_DIR) $(if $(WHEELS_MAX_MIB),--max-mib $(WHEELS_MAX_MIB)) \
	  $(if $(MACHINE_PACKAGES),--machine-packages $(MACHINE_PACKAGES)) $(foreach w,$(WITHOUT),--without $(w))

clean:
	rm -rf results logs benchmarks .snakemake
