# syntax=docker/dockerfile:1
# streammeta daemon image: non-root, read-only-root friendly, CPU torch by default.
#   docker build -t streammeta:0.1.0 .
#   docker build -t streammeta:0.1.0-cuda --build-arg TORCH_VARIANT=cu128 .
# TORCH_VARIANT names a PyTorch wheel index: cpu, or a CUDA build that the index
# publishes for TORCH_VERSION (e.g. cu128). The CUDA wheels bring their own CUDA
# libraries, so the same slim base serves both; the host needs only the NVIDIA
# driver and the container toolkit.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_VARIANT=cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/app/.venv/bin:$PATH
# torch first, from the PyTorch index: from PyPI a bare `torch` pulls the CUDA build.
RUN python -m venv /app/.venv \
    && pip install "torch==${TORCH_VERSION}" --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY streammeta ./streammeta
RUN pip install . && python -m compileall -q /app/.venv

FROM python:${PYTHON_VERSION}-slim
RUN groupadd --system --gid 10001 streammeta \
    && useradd --system --uid 10001 --gid streammeta --no-create-home \
       --home-dir /var/lib/streammeta --shell /usr/sbin/nologin streammeta \
    && install -d -o streammeta -g streammeta -m 0700 /var/lib/streammeta
COPY --from=build /app/.venv /app/.venv
COPY config.toml /etc/streammeta/config.toml
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STREAMMETA_CHECKPOINT_DIR=/var/lib/streammeta \
    STREAMMETA_METRICS_HOST=0.0.0.0
USER 10001:10001
WORKDIR /var/lib/streammeta
VOLUME ["/var/lib/streammeta"]
EXPOSE 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=2)"]
ENTRYPOINT ["streammeta"]
CMD ["run", "--config", "/etc/streammeta/config.toml"]
