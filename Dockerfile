# syntax=docker/dockerfile:1
#
# tocsin's container image.
#
#   docker build -t tocsin:0.1.0 --build-arg VERSION=0.1.0 .
#   docker run --rm -p 9095:9095 --read-only --tmpfs /tmp -e TOCSIN_RECEIVER_TOKEN=x tocsin:0.1.0
#
# BASE is any Debian bookworm image with python3 (3.11) and its venv module: the official Python
# image by default; CI builds on a debootstrap'd bookworm with Debian's python3 (.ci/image.sh).
#
# Stage 1 builds tocsin's wheel and the wheels of its dependencies; stage 2 installs them from
# that directory only (no index), so the final image holds no compiler, no pip cache and no
# source tree. tocsin lives in a virtual environment, /opt/tocsin: Debian's python3 refuses pip
# installs into the system interpreter (PEP 668), and a venv works the same on either base. The
# process runs as UID/GID 10001 and writes only to /var/lib/tocsin (a volume: the SQLite store)
# and /tmp, so it runs with a read-only root filesystem.

ARG BASE=python:3.11-slim-bookworm

# --------------------------------------------------------------------------- build
FROM ${BASE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the wheel needs (.dockerignore keeps the rest of the work tree out of the context).
# `README.md*`: pyproject names the readme for the wheel's metadata; the glob lets a context
# without it still build (setuptools only warns).
COPY pyproject.toml README.md* ./
COPY router/ router/
COPY rules/ rules/
COPY escalation/ escalation/
COPY adapters/ adapters/
COPY config/ config/

# `pip wheel .` builds tocsin's wheel and collects every dependency as a wheel next to it, with
# the pip of a throwaway venv (Debian's python3 has no pip of its own).
RUN python3 -m venv /opt/build \
    && /opt/build/bin/pip wheel --wheel-dir /wheels .

# --------------------------------------------------------------------------- runtime
FROM ${BASE}

ARG VERSION=0.1.0
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="tocsin" \
      org.opencontainers.image.description="Alertmanager -> PagerDuty webhook router and auto-escalator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE_URL}"

# No .pyc writes at run time (the root filesystem is read-only; pip compiled them at install),
# unbuffered logs, a HOME that is writable, temporary files in /tmp (SQLite tries /var/tmp
# first unless TMPDIR is set), and the venv's `tocsin` and `python` first on PATH.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    PATH=/opt/tocsin/bin:$PATH

# A fixed numeric UID/GID, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 tocsin \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/tocsin --no-create-home \
       --shell /usr/sbin/nologin tocsin \
    && mkdir -p /var/lib/tocsin /etc/tocsin \
    && chown 10001:10001 /var/lib/tocsin \
    && chmod 0750 /var/lib/tocsin

# Install from the build stage's wheels only; the bind mount keeps them out of every layer. pip
# and setuptools then leave the venv: nothing installs anything at run time.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python3 -m venv /opt/tocsin \
    && /opt/tocsin/bin/pip install --no-index --find-links=/wheels /wheels/tocsin-*.whl \
    && /opt/tocsin/bin/pip uninstall --yes pip setuptools

# A default configuration so the image runs as it is: the README quick start's example config
# and rule file, listening on all interfaces instead of loopback. Kubernetes (the Helm chart)
# mounts its own ConfigMap over /etc/tocsin. The store path `tocsin.db` is relative to the
# working directory, /var/lib/tocsin. The grep fails the build if example.yaml's listen line
# ever changes shape; `tocsin check` fails it if the result is not a valid configuration.
COPY config/example.yaml /etc/tocsin/tocsin.yaml
COPY config/rules/ /etc/tocsin/rules/
RUN sed -i 's|^  listen: "127.0.0.1:9095"|  listen: "0.0.0.0:9095"|' /etc/tocsin/tocsin.yaml \
    && grep -q '^  listen: "0.0.0.0:9095"' /etc/tocsin/tocsin.yaml \
    && TOCSIN_RECEIVER_TOKEN=build-check tocsin check /etc/tocsin/tocsin.yaml

WORKDIR /var/lib/tocsin
VOLUME ["/var/lib/tocsin"]
USER 10001:10001
EXPOSE 9095

# Liveness only (/healthz); Kubernetes ignores HEALTHCHECK and uses the chart's probes instead.
# Python's urllib raises on a refused connection or a non-2xx answer, so no curl is needed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('TOCSIN_HEALTHCHECK_URL', 'http://127.0.0.1:9095/healthz'), timeout=4)"]

ENTRYPOINT ["tocsin"]
CMD ["serve", "--config", "/etc/tocsin/tocsin.yaml"]
