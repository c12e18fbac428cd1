# syntax=docker/dockerfile:1
# sspcab-inspect: the inspection service, one uvicorn process per GPU (scale with replicas).
#
#   docker build -t sspcab-inspect:cuda .                        # CUDA host (default)
#   docker build -t sspcab-inspect:cpu --build-arg FLAVOR=cpu .  # laptop, CI-like host
#
# Serves the demo weights baked into /weights; mount a folder of <category>.safetensors files over
# /weights (read-only) to serve your own. Settings: INSPECT_* variables (see .env.example).

# Which base the service stage starts from: cuda or cpu.
ARG FLAVOR=cuda

# PyTorch's CUDA runtime image: torch, CUDA and cuDNN are there; pip must not download torch again.
FROM pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime AS base-cuda

# Python with torch's CPU wheel from PyTorch's CPU index (a fraction of the CUDA wheels' size).
FROM python:3.11-slim-bookworm AS base-cpu
ARG TORCH_VERSION=2.7.1
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"

# The base is one of the two stages above, each pinned (hence the ignore: hadolint sees a variable).
# hadolint ignore=DL3006
FROM base-${FLAVOR} AS service
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    INSPECT_WEIGHTS_DIR=/weights \
    INSPECT_LOG_FORMAT=json
WORKDIR /srv/sspcab-inspect

# The dependencies first (a layer that survives code changes), torch excluded: the base has it.
COPY pyproject.toml README.md LICENSE ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(d for d in deps if not d.startswith('torch')))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the service itself, without its dependencies (all there, torch included).
COPY app ./app
COPY models ./models
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf build ./*.egg-info \
    && python -c "import torch, app.main; print('torch', torch.__version__)"

# The demo weights, so that a container without a mounted folder serves something.
COPY weights/demo.safetensors /weights/demo.safetensors

RUN groupadd --system --gid 10001 inspect \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin inspect
USER 10001:10001

EXPOSE 8000
# Ready once the models are loaded and warmed up (may take a while on a cold GPU: start period).
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
# One process: it owns one device and batches for it. The service logs each request itself.
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000", "--no-access-log", "--timeout-graceful-shutdown", "20"]
