# Development set-up and the project's two main commands:
#   make demo   set up, then run the offline main job (teacher fine-tuning, logit precomputation, distillation)
#   make test   set up, then run the default test suite (tiny models on CPU, the README's quickstart on the packaged
#               MiniLM and tweets, and DeepSpeed ZeRO-3 on two CPU processes)
# TORCH_SPEC pins the CPU wheel that installs from this machine's disk in seconds; override it elsewhere,
# for example `make test TORCH_SPEC=torch` on a CUDA machine. The package itself asks only for torch>=2.4.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install install-examples install-deepspeed install-image-data test test-slow demo demo-image lint

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

$(VENV)/.examples: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[test,examples]"
	touch $@

# DeepSpeed for the ZeRO-3 test, CPU only: no compiled ops (DS_BUILD_OPS=0), built against the installed torch
# (--no-build-isolation); about half a minute. The version follows setup.cfg's `deepspeed` extra.
$(VENV)/.deepspeed: $(VENV)/.installed
	DS_BUILD_OPS=0 $(BIN)/python -m pip install -q --no-build-isolation "deepspeed>=0.15"
	touch $@

install: $(VENV)/.installed

install-examples: $(VENV)/.examples

install-deepspeed: $(VENV)/.deepspeed

# Fashion-MNIST for the image recipe and its slow test (Debian package, needs root).
install-image-data:
	test -d /usr/share/datasets/fashion-mnist || (apt-get update -q && apt-get install -y -q dataset-fashion-mnist)

demo: install-examples
	PYTHON=$(BIN)/python bash recipes/demo_tweets.sh

# The image recipe's measurement (README): ResNet teacher, ViT with CE, ViT distilled; about 20 CPU-minutes.
demo-image: install-examples install-image-data
	PYTHON=$(BIN)/python bash recipes/demo_fashion_mnist.sh

test: install-examples install-deepspeed
	$(BIN)/python -m pytest -q

test-slow: install-examples install-image-data
	$(BIN)/python -m pytest -q -m slow -p no:cacheprovider

lint: install
	$(BIN)/ruff check hf_distill recipes tests benchmarks examples
	$(BIN)/ruff format --check hf_distill recipes tests benchmarks examples
