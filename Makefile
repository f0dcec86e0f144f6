.DEFAULT_GOAL := help
SHELL := /bin/bash

##@ General
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-14s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Main commands
demo: ## Run the local demo: test bed, emulator, operator, samples
	tools/bootstrap
	uv run amlops demo

test: ## Run the whole test suite from a fresh machine (what CI runs)
	tools/test

##@ Development
sync: ## Install the locked Python environment
	uv sync --locked

testbed: ## Build (or reuse) kube-apiserver, etcd and helm in the cache
	tools/testbed/build all

fmt: ## Format and auto-fix
	uv run ruff format operator tests bench
	uv run ruff check --fix operator tests bench

lint: ## ruff, import-linter
	uv run ruff check operator tests bench
	uv run ruff format --check operator tests bench
	uv run lint-imports

typecheck: ## mypy (strict)
	uv run mypy

unit: ## Pure-function tests only
	uv run pytest -m unit

crds: ## Regenerate crds/ and the chart's copy from the typed models
	uv run amlops crdgen

crds-check: ## Fail if the committed CRDs are stale
	uv run amlops crdgen --check

.PHONY: help demo test sync testbed fmt lint typecheck unit crds crds-check
