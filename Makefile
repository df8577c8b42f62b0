# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv when it is missing
# and install the pinned set from requirements.lock (the single source of versions).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo figures test install clean-outputs bench gpu-check lab strip rehearse

# The git filter (nbstripout, set up in this clone's .git/config) strips outputs from notebooks
# as they are staged, so executed notebooks never reach a commit. Bytecode is compiled on all cores
# (pip compiles on one); a few packages ship files that are not Python 3 (test fixtures), so
# compileall's exit status is ignored, as pip ignores them.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-compile -r requirements.lock
	-$(BIN)/python -m compileall -q -j 0 $(VENV)/lib >/dev/null
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	! git rev-parse --git-dir >/dev/null 2>&1 || { git config filter.nbstripout.clean \
	  '.venv/bin/nbstripout --keep-id' && git config filter.nbstripout.smudge cat; }
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ecgnb demo

# The README's figures (docs/*.png) from the demo's results: run `make demo` first
figures: $(STAMP)
	$(BIN)/ecgnb report demo --figures docs

# Two test processes (pytest-xdist), a file's tests in one process (a notebook's cells stay in
# order in one kernel), one math thread per process: two processes of two spinning threads
# each on two cores slow torch and BLAS down many times (docs/performance.md, the tests' section)
TEST_WORKERS ?= 2
TEST_THREADS := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1
test: $(STAMP)
	MPLBACKEND=Agg $(TEST_THREADS) $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile \
	  tests --nbval-lax notebooks

# JupyterLab on the notebooks (--allow-root: JupyterLab refuses root without it, e.g. in a container)
lab: $(STAMP)
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/

# Remove outputs and execution counts from the notebooks in the work tree
strip: $(STAMP)
	$(BIN)/nbstripout --keep-id notebooks/*.ipynb

# Optional side-by-side with the published code: make bench TS2VEC_CODE=dir TSTCC_CODE=dir
# and with an earlier ecgnb checkout: BEFORE=dir
bench: $(STAMP)
	$(BIN)/python -m ecgnb.bench pretrain $(if $(BEFORE),--before $(BEFORE))
	$(BIN)/python -m ecgnb.bench probe
	$(BIN)/python -m ecgnb.bench softdtw
	$(BIN)/python -m ecgnb.bench flops
	$(BIN)/python -m ecgnb.bench probe-memory
	$(if $(TS2VEC_CODE)$(TSTCC_CODE),$(BIN)/python -m ecgnb.bench published \
	  $(if $(TS2VEC_CODE),--ts2vec-code $(TS2VEC_CODE)) $(if $(TSTCC_CODE),--tstcc-code $(TSTCC_CODE)))

# A slice of params/grids/paper.yaml on paper-size data, timed and extrapolated to the whole grid
# (docs/performance.md). Reads ECGNB_FRAGMENT_ROOT/ECGNB_WESAD_ROOT when both are set; else it first
# generates the paper-size embedded data under $$ECGNB_DATA (default ./data) if missing: about
# 4.4 GB and 5 min. Then 27 min on a busy 2-core machine: make rehearse [BATCHES=2] [BACKBONES=ts2vec]
rehearse: $(STAMP)
	$(BIN)/python -m ecgnb.bench rehearse $(if $(BATCHES),--batches $(BATCHES)) \
	  $(if $(BACKBONES),--backbones $(BACKBONES))

# Every CUDA path on the GPU against the CPU, rates, the paper grids' GPU hours; without CUDA
# one line and exit 0 (docs/performance.md). On a GPU machine without network or pip, name an
# interpreter that already has CUDA torch and the packages listed there: nothing is installed,
# .venv is not built: make gpu-check GPU_PYTHON=python3
gpu-check: $(if $(GPU_PYTHON),,$(STAMP))
	$(if $(GPU_PYTHON),PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" $(GPU_PYTHON),$(BIN)/python) -m ecgnb.bench gpu-check

clean-outputs:
	rm -rf outputs/*/ outputs/results.csv
