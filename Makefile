# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv when it is missing
# and install the pinned set from requirements.lock (the single source of versions).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo figures test install clean-outputs bench

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ecgnb demo

# The README's figures (docs/*.png) from the demo's results: run `make demo` first
figures: $(STAMP)
	$(BIN)/ecgnb report demo --figures docs

test: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python -m pytest -q tests --nbval-lax notebooks

# Optional side-by-side with the published code: make bench TS2VEC_CODE=dir TSTCC_CODE=dir
# and with an earlier ecgnb checkout: BEFORE=dir
bench: $(STAMP)
	$(BIN)/python -m ecgnb.bench pretrain $(if $(BEFORE),--before $(BEFORE))
	$(BIN)/python -m ecgnb.bench probe
	$(BIN)/python -m ecgnb.bench softdtw
	$(if $(TS2VEC_CODE)$(TSTCC_CODE),$(BIN)/python -m ecgnb.bench published \
	  $(if $(TS2VEC_CODE),--ts2vec-code $(TS2VEC_CODE)) $(if $(TSTCC_CODE),--tstcc-code $(TSTCC_CODE)))

clean-outputs:
	rm -rf outputs/*/ outputs/results.csv
