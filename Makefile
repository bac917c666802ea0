# spatialvid: `make demo` (set up + run the main job on the bundled sample), `make test` (set up + full suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Optional: TORCH_INDEX=<a CPU wheel index URL> to force a CPU torch build on a fresh machine.
TORCH_INDEX ?=
TORCH_PIP_ARGS := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)

.PHONY: setup demo test test-fast lint cuda-check gpu-check bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0 $(TORCH_PIP_ARGS)
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -c "import spatialvid.render.backend as b; b.build_cpu_extension(verbose=True)" || true
	touch $@

demo: setup
	$(VENV)/bin/spatialvid demo --out data/demo

test: setup
	$(VENV)/bin/ruff check spatialvid viewer tests benchmarks
	$(PY) -m pytest -q --durations=20

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check spatialvid viewer tests benchmarks

# Compile every CUDA source for sm_80 and sm_90 and the torch bindings (needs nvcc; runs nothing on a GPU):
# with a CUDA build of torch the whole extension is built and imported; with a CPU torch bindings_cuda.cpp is
# compiled against its headers + $CUDA_HOME/include (not linked). The output says which.
cuda-check: setup
	$(PY) cuda_ext/check_nvcc.py

# On a GPU machine: build, test (tests/test_cuda.py), benchmark vs gsplat and the CPU; JSON last (~8 min).
gpu-check: setup
	PY=$(PY) bash benchmarks/gpu_check.sh

bench: setup
	$(PY) benchmarks/raster.py --json

clean:
	rm -rf $(VENV) build *.egg-info
