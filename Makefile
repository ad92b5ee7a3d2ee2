# facesets — two commands matter: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
SHARED ?= ../shared
PROTOS := $(wildcard protos/facesets/v1/*.proto)
GEN_DIR := clients
UV_VERSION := 0.13.8
# The workspace: clients/ (facesets-client), services/ (facesets-services), orchestrator/
# (the facesets CLI), installed editable from uv.lock with the CPU inference runtime and the
# development tools. `make install SYNC_EXTRAS=...` picks other extras of the lock.
SYNC_EXTRAS ?= --extra cpu --extra embedded
LOCKS := pyproject.toml uv.lock clients/pyproject.toml services/pyproject.toml orchestrator/pyproject.toml

.PHONY: install bytecode protos check-protos test demo bench fuzz lint lint-checks clean system-deps lock check-locks size test-clip-export

$(UV):
	$(PYTHON) -m venv $(VENV) && $(PY) -m pip install -q uv==$(UV_VERSION)

$(STAMP): $(LOCKS) | $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync -q --locked --all-packages $(SYNC_EXTRAS)
	@touch $(STAMP)

# `facesets clip export` and the tests that compare it with open_clip need torch: a separate
# environment (.venv-clip), never the default one (torch's default wheel brings CUDA).
CLIP_VENV := .venv-clip
$(CLIP_VENV)/.installed: $(LOCKS) | $(UV)
	UV_PROJECT_ENVIRONMENT=$(CLIP_VENV) $(UV) sync -q --locked --all-packages $(SYNC_EXTRAS) --extra clip-export
	@touch $@

test-clip-export: $(CLIP_VENV)/.installed
	FACESETS_SHARED=$(abspath $(SHARED)) $(CLIP_VENV)/bin/python -m pytest -q tests/test_clip_score.py

# The lock files, one per target (locks/README.md): uv.lock (Linux services + CLI + CPU
# inference + dev tools), locks/linux-cuda.txt, locks/windows-directml.txt, locks/client.txt.
# Re-resolve them after a change to any pyproject.toml or locks/*.in (they are committed);
# versions already locked are kept unless an input demands otherwise, or LOCK_ARGS=--upgrade.
lock: | $(UV)
	$(PY) scripts/locks.py lock $(LOCK_ARGS)

# Exits 1 naming each lock that re-resolving from the repository would change (tests/test_locks.py).
check-locks: | $(UV)
	$(PY) scripts/locks.py check

# Each target's environment built from its lock in a fresh folder: size on disk, distributions,
# against the budgets (README, "Install size"); SIZE_ARGS=--time-install also times make install.
size: | $(UV)
	$(PY) bench/install_size.py $(SIZE_ARGS)

# Bytecode of the environment, compiled once per install: the tests and commands start many
# Python processes (services, commands), each of which otherwise compiles its ~700 modules
# again (1 to 1.5 s of CPU a process) where no bytecode can be written (PYTHONDONTWRITEBYTECODE,
# a read-only environment). Python reads bytecode that is there whatever that setting says.
BYTECODE := $(VENV)/.bytecode
$(BYTECODE): $(STAMP)
	$(PY) -m compileall -q -j 0 $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') >/dev/null \
	  || echo "note: some modules of $(VENV) did not compile; Python compiles them when imported"
	@touch $@

# The workspace's own modules (editable installs), compiled where they changed.
bytecode: $(BYTECODE)
	@$(PY) -m compileall -q -j 0 clients services orchestrator >/dev/null

install: $(STAMP) system-deps bytecode

# ffmpeg for the video pipeline, chromium for the report test; installed when missing.
system-deps:
	@missing=""; \
	command -v ffmpeg >/dev/null || missing="$$missing ffmpeg"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "note: install$$missing for the video pipeline and report tests"; fi; \
	fi

# Generated stubs are committed; they are never edited by hand.
protos: $(STAMP)
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=$(GEN_DIR) --pyi_out=$(GEN_DIR) \
	  --grpc_python_out=$(GEN_DIR) $(PROTOS)

# Three pytest workers (pytest-xdist) on the 2-core machine: many tests wait on service
# processes, so a third worker fills the cores (CPU used 182% of the wall time with two workers,
# 186% with three; the whole run 8:58 -> 8:04 with the change to BLAS threads below it). Each
# takes whole modules (--dist loadscope), so a module's fixtures are built once, and the slow
# modules first (tests/conftest.py orders them). TEST_WORKERS=0 runs in one process. Bytecode may be written during the run: pytest then keeps
# the test modules it rewrote for its assertions (about 3 s of CPU a worker at every start).
# ruff and mypy run beside the tests (one core for about 17 s, in the time the tests leave part
# of the second idle); their output follows the tests', and either failing fails `make test`
# (`make lint` alone answers sooner).
TEST_WORKERS ?= 3
test: install
	@lint_log=$$(mktemp); \
	$(MAKE) --no-print-directory lint-checks >"$$lint_log" 2>&1 & lint_pid=$$!; \
	PYTHONDONTWRITEBYTECODE= FACESETS_SHARED=$(abspath $(SHARED)) $(PY) -m pytest -q -x --durations=15 \
	  -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder $(PYTEST_ARGS); tests=$$?; \
	wait $$lint_pid; lint=$$?; cat "$$lint_log"; rm -f "$$lint_log"; \
	if [ $$lint -ne 0 ]; then echo "make test: ruff or mypy found problems (above)"; fi; \
	[ $$tests -eq 0 ] && [ $$lint -eq 0 ]

demo: install
	@if [ ! -d "$(SHARED)/models/facepack-mini" ] || [ ! -d "$(SHARED)/data/lfw" ]; then \
	  echo "make demo runs on the sample data in $(SHARED), which is not here."; \
	  echo "To run facesets on your own photos:"; \
	  echo "  $(VENV)/bin/facesets run SRC OUT       # SRC: a folder of photos, OUT: where facesets go"; \
	  echo "It uses InsightFace's buffalo_l model pack, which InsightFace fetches into"; \
	  echo "~/.insightface/models/buffalo_l on first use (or place it there by hand)."; \
	  exit 2; fi
	$(PY) -m facesets.orchestrator.demo --shared $(SHARED)

bench: install
	$(PY) bench/run.py --shared $(SHARED) $(BENCH_ARGS)

# Every RPC of the three services (real processes) and the decoder, then the planted mode (hostile
# files on disk, a sentinel tree outside the root), FUZZ_SECONDS per target;
# prints executions per second and each finding, exits 1 on any. `make test` runs a short pass.
FUZZ_SECONDS ?= 30
fuzz: install
	FACESETS_MODEL_ROOT=$(abspath $(SHARED)) FACESETS_MODEL_PACK=facepack-mini \
	  $(PY) tests/fuzzing.py --shared $(abspath $(SHARED)) --seconds $(FUZZ_SECONDS) $(FUZZ_ARGS)

# ruff over the repository, mypy over the three source trees (generated stubs are read for
# their types through the .pyi files, never checked; see [tool.mypy] in pyproject.toml).
lint: install lint-checks

lint-checks:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy services orchestrator clients

clean:
	rm -rf $(VENV) $(CLIP_VENV) .pytest_cache build dist */dist
