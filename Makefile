# poseops: `make demo` and `make test` work on a fresh clone with Python 3.11, pip and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
# One Ray instance the demo's stages attach to (instead of each paying ~5 s for its own).
RAY_PORT ?= 6390
# Ray >= 2.59 starts clusters with token authentication; drivers must use it too.
export RAY_AUTH_MODE ?= token
PYTEST := $(BIN)/python -m pytest -q --durations=15

.PHONY: install lint test test-slow demo bench clean-state help

help:
	@echo "make demo       run the whole pipeline on synthetic captures, serve it, query it"
	@echo "make lint       ruff (check, format) and the import-layer contracts (pyproject.toml)"
	@echo "make test       unit and fast integration tests"
	@echo "make test-slow  learning, cluster, fault, load and fuzz tests"
	@echo "make bench      benchmarks (figures printed and written to .poseops/bench/)"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch first, so nothing pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[test,s3,postgres]"
	touch $@

install: $(VENV)/.installed

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: install lint
	$(PYTEST)

test-slow: install
	$(PYTEST) -m slow; status=$$?; [ $$status -eq 5 ] && status=0; exit $$status

demo: install
	@# token authentication needs a token: made once in ~/.ray/auth_token (kept if it exists)
	@[ -n "$$RAY_AUTH_TOKEN" ] || $(BIN)/ray get-auth-token --generate >/dev/null
	@$(BIN)/ray start --head --num-cpus=2 --port=$(RAY_PORT) --node-ip-address=127.0.0.1 \
	    --include-dashboard=true --dashboard-host=127.0.0.1 --object-store-memory=1000000000 --disable-usage-stats \
	    >.poseops-ray-start.log 2>&1 || { cat .poseops-ray-start.log; exit 1; }
	@rm -f .poseops-ray-start.log; status=0; \
	RAY_ADDRESS=127.0.0.1:$(RAY_PORT) $(BIN)/python flows/demo.py || status=$$?; \
	$(BIN)/ray stop --force >/dev/null 2>&1; exit $$status

bench: install
	$(BIN)/python benchmarks/run_all.py

clean-state:
	rm -rf .poseops
