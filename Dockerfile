# syntax=docker/dockerfile:1
# Multi-stage: build the locked environment with uv, run it from a slim image as a non-root user.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
RUN pip install --no-cache-dir uv==0.13.8
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY operator ./operator
RUN UV_PROJECT_ENVIRONMENT=/opt/amlops uv sync --locked --no-dev --no-editable --compile-bytecode

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="amlops" \
      org.opencontainers.image.description="Kubernetes operator for Azure ML compute and parallel jobs" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /opt/amlops /opt/amlops
RUN useradd --system --uid 10001 --no-create-home amlops
USER 10001
ENV PATH=/opt/amlops/bin:$PATH PYTHONSAFEPATH=1 PYTHONUNBUFFERED=1
EXPOSE 8080 9090
ENTRYPOINT ["amlops"]
CMD ["run"]
