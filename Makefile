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
	uv run ruff format operator emulator/src testbed/src tests bench
	uv run ruff check --fix operator emulator/src testbed/src tests bench

lint: ## ruff, import-linter
	uv run ruff check operator emulator/src testbed/src tests bench
	uv run ruff format --check operator emulator/src testbed/src tests bench
	uv run lint-imports

typecheck: ## mypy (strict)
	uv run mypy

unit: ## Pure-function tests only
	uv run pytest -m unit

crds: ## Regenerate crds/ and the chart's copy from the typed models
	uv run amlops crdgen

crds-check: ## Fail if the committed CRDs are stale
	uv run amlops crdgen --check

##@ Release
chart-lint: ## helm lint the chart and check its renders against the Kubernetes schemas (no cluster)
	"$$(tools/testbed/build helm | tail -n 1)/helm" lint --strict charts/amlops --kube-version 1.37.2
	uv run pytest tests/chart -m "not e2e" -q

IMAGE ?= localhost/amlops:dev
PYTHON_IMAGE ?=
image: ## Build the operator image with buildah (IMAGE=name; PYTHON_IMAGE=base, default: a local Debian stand-in)
	base="$(PYTHON_IMAGE)"; [ -n "$$base" ] || base=$$(tools/image/base-image); \
	ca=(); if [ -f /etc/ssl/certs/ca-certificates.crt ]; then \
	  ca=(--volume /etc/ssl/certs/ca-certificates.crt:/run/build-ca.crt:ro \
	      --build-arg SSL_CERT_FILE=/run/build-ca.crt --build-arg PIP_CERT=/run/build-ca.crt); fi; \
	buildah bud --isolation chroot --layers "$${ca[@]}" --build-arg PYTHON_IMAGE="$$base" \
	  --build-arg REVISION="$$(git rev-parse HEAD)" --tag "$(IMAGE)" .

.PHONY: help demo test sync testbed fmt lint typecheck unit crds crds-check chart-lint image
