# syntax=docker/dockerfile:1
# One image for the operator (default CMD) and the scorer (the operator's scorer Deployments
# set `command: [python, -m, scorefleet.scorer]`). Build from the repository root:
#
#   docker build -t ghcr.io/scorefleet/scorer:0.1.0 .
#
# Built on the development machines and in CI too, with no registry and no daemon:
# scorefleet/dev/image.py runs `buildah bud` on this file with PYTHON_IMAGE set to a local
# Debian bookworm base made by debootstrap (python3 3.11, python3-venv, python3-pip,
# python-is-python3), and imports the result into the local node's containerd.
# tests/dev/test_image.py runs that image; tests/chart/test_image.py lints this file. See
# docs/deploy.md.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- deps: the runtime dependencies in /opt/venv; rebuilt only when pyproject.toml changes ---
FROM ${PYTHON_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml ./
# The runtime venv holds the dependencies only: no pip, no grpcio-tools. The project itself goes
# to /opt/scorefleet (build stage), found through a .pth file: a code change then rebuilds a
# layer of a few MB, not the ~370 MB venv.
RUN python -m venv --without-pip /opt/venv \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
 && python -m pip --python /opt/venv/bin/python install -r requirements.txt \
 && echo /opt/scorefleet > "$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/scorefleet.pth"

# ---- build: generate the proto stubs, build the wheel, install it into /opt/scorefleet -------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# Build tools get a venv of their own, which never reaches the final stage.
RUN python -m venv /opt/tools \
 && /opt/tools/bin/pip install "grpcio-tools>=1.66" "setuptools>=77" wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY scorefleet/ scorefleet/
# The stubs under scorefleet/scorer/_generated are gitignored: generated here, shipped in the
# wheel with their stamp (_generated/PROTO_SHA), so the scorer never tries to regenerate them at
# start-up (it could not: no grpcio-tools, read-only root filesystem). The wheel is installed
# without its dependencies (the deps stage has them), bytecode compiled; its console script is
# dropped (it would point at the tools venv; the image runs `python -m ...`).
RUN /opt/tools/bin/python -m scorefleet.scorer.protogen \
 && /opt/tools/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && /opt/tools/bin/pip install --no-deps --target /opt/scorefleet /wheels/*.whl \
 && rm -r /opt/scorefleet/bin

# ---- final: the base image, a non-root user, the dependencies, then the project ------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="scorefleet" \
      org.opencontainers.image.description="scorefleet operator and gRPC scorer" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 scorefleet \
 && useradd --system --uid 10001 --gid scorefleet --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin scorefleet
COPY --from=deps /opt/venv /opt/venv
COPY --from=build /opt/scorefleet /opt/scorefleet
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
# 8080 operator liveness (Kopf), 9000 scorer gRPC, 9090 scorer metrics.
EXPOSE 8080 9000 9090
CMD ["python", "-m", "scorefleet.operator"]
