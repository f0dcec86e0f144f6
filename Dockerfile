# syntax=docker/dockerfile:1
# The amlops operator image. Two stages: uv builds the locked runtime environment (no dev or test groups, the
# project installed as a wheel, not editable), and the final stage copies only that environment onto the
# same slim Python base, so no compiler, uv or source tree ships. It runs as the non-root uid 10001 with a
# read-only root filesystem in mind (the chart mounts an emptyDir on /tmp).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.8
# Behind a TLS-inspecting proxy, mount its CA bundle for the build only and name it here (build stage only, so
# it never reaches the image): --volume /etc/ssl/certs/ca-certificates.crt:/run/build-ca.crt:ro
# --build-arg SSL_CERT_FILE=/run/build-ca.crt --build-arg PIP_CERT=/run/build-ca.crt
ARG SSL_CERT_FILE
ARG PIP_CERT
ENV UV_PROJECT_ENVIRONMENT=/opt/amlops \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /src
# Dependencies first: this layer is reused until uv.lock changes, whatever happens to the code.
# The workspace members' pyproject.toml only: uv needs them to check the lock, but their code (the emulator, which
# accepts fixed credentials and runs task command lines; the test bed and the demo) is development tooling in
# the dev group, never installed here, so the image cannot start them (`amlops emulator` / `amlops demo` say
# so). The operator never imports them (an import-linter contract in pyproject.toml).
COPY pyproject.toml uv.lock README.md ./
COPY emulator/pyproject.toml ./emulator/
COPY testbed/pyproject.toml ./testbed/
RUN uv sync --locked --no-dev --no-install-project --no-editable --no-cache
COPY operator ./operator
RUN uv sync --locked --no-dev --no-editable --no-cache

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="amlops" \
      org.opencontainers.image.description="Kubernetes operator for Azure ML compute and parallel jobs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT"
# jemalloc in place of CPython's small-object allocator and glibc's malloc (the ENV below). CPython returns a 1 MiB
# arena to the system only once nothing in it lives, and after thousands of objects applied at once (kopf keeps
# each one's watch events until a worker takes them) the operator kept ~100 MB of such arenas for good; jemalloc
# gives back each page nothing uses (README, Benchmarks: bench/amlcompute_scale.py --steps).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libjemalloc2 \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --gid 10001 amlops \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin amlops
COPY --from=build /opt/amlops /opt/amlops
USER 10001:10001
# PYTHONSAFEPATH: never import from the working directory. Bytecode was compiled at build time, and the root
# filesystem may be read-only, so Python must not try to write more. The allocator: jemalloc, for every
# allocation (PYTHONMALLOC=malloc), one arena (the operator is one event loop and a few threads), and pages
# returned a second after they are free (amlops_testbed.IMAGE_ALLOCATOR_ENV: the same for tests and benches).
ENV PATH=/opt/amlops/bin:$PATH \
    PYTHONSAFEPATH=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LD_PRELOAD=libjemalloc.so.2 \
    PYTHONMALLOC=malloc \
    MALLOC_CONF=background_thread:true,narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:0
WORKDIR /tmp
EXPOSE 8080 9090
ENTRYPOINT ["amlops"]
CMD ["run"]
