# syntax=docker/dockerfile:1
# greenmodel-operator image: `docker build -t greenmodel-operator .`
#
# Base image: python:3.11.14-slim-bookworm (Debian 12, CPython 3.11, the version CI tests).
# The digest is the multi-arch index digest found in several public Dockerfiles pinning that tag; it was
# NOT verified by a pull (no container engine where this was written). Refresh both together with
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# ---- build: a virtualenv with the locked dependencies (hash-checked wheels only) and the operator ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY requirements.lock requirements-build.lock ./
# --require-hashes: every wheel must match a hash in the lock; --only-binary: nothing is compiled here.
RUN /opt/venv/bin/pip install --require-hashes --no-deps --only-binary=:all: -r requirements.lock \
 && /opt/venv/bin/pip install --require-hashes --no-deps --only-binary=:all: -r requirements-build.lock
COPY pyproject.toml README.md ./
COPY operator ./operator
# The project itself: no dependency resolution (all came from the lock), no build isolation (the build
# backend came from requirements-build.lock), then drop the build backend from the runtime venv.
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation . \
 && /opt/venv/bin/pip uninstall -y setuptools wheel \
 && /opt/venv/bin/python -c "import greenmodel.cli.main"

# ---- runtime: the same base, the venv, nothing else ----
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="greenmodel-operator" \
      org.opencontainers.image.description="Serve LLMs on Kubernetes GPUs with the least energy and carbon that meets the SLO" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/greenmodel/greenmodel-operator"
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GREENMODEL_METRICS_PORT=8080 \
    GREENMODEL_HEALTH_PORT=8081 \
    GREENMODEL_METRICS_ADDRESS=0.0.0.0
# Numeric non-root user (no /etc/passwd entry needed): runAsNonRoot can verify it; matches the chart.
USER 65532:65532
WORKDIR /tmp
# 8080: /metrics (Prometheus); 8081: /healthz (liveness, kopf's probe endpoint).
EXPOSE 8080 8081
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8081/healthz', timeout=4)"]
ENTRYPOINT ["greenmodel", "run"]
