# syntax=docker/dockerfile:1
# One image for the API, the workers and the UI (the command picks the role).
#   docker build -t pmtl-lab .                          # CPU build of torch (small)
#   docker build --build-arg TORCH_VARIANT=cuda -t pmtl-lab:cuda .   # CUDA build (GPU workers)
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ARG TORCH_VARIANT=cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
# torch first: the CPU wheels come from PyTorch's CPU index; "cuda" keeps PyPI's CUDA build.
RUN case "$TORCH_VARIANT" in \
      cpu) pip install --index-url https://download.pytorch.org/whl/cpu \
             torch==2.14.1 torchvision==0.29.1 ;; \
      cuda) pip install -c requirements.lock torch==2.14.1 torchvision==0.29.1 ;; \
      *) echo "TORCH_VARIANT must be cpu or cuda" >&2; exit 1 ;; \
    esac
COPY pmtl_core ./pmtl_core
COPY backend ./backend
COPY frontend ./frontend
# The ray extra: the same image runs the Ray nodes and the dispatcher (compose profile `ray`).
RUN pip install -c requirements.lock ".[ray]" && pip check

FROM python:${PYTHON_VERSION}-slim AS runtime
RUN useradd --create-home --uid 1000 pmtl \
    && mkdir -p /data/artifacts /data/datasets \
    && chown -R pmtl:pmtl /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PMTL_HOME=/data \
    MPLCONFIGDIR=/tmp/matplotlib
USER pmtl
WORKDIR /home/pmtl
EXPOSE 8000 8501
# The API's liveness; compose overrides it for the worker and UI roles.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
CMD ["pmtl", "serve", "--host", "0.0.0.0", "--port", "8000"]
