# Hindi-to-English translation service on CPU.
#
#   docker build -t hindi-nmt .
#   docker run -p 127.0.0.1:8000:8000 hindi-nmt
#
# The image serves the model in models/hi-en. TORCH_SPEC holds the pip arguments that
# install torch; the default is the CPU-only build of the release the project is tested and
# benchmarked with, far smaller than the CUDA one.
FROM python:3.11-slim

ARG TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first: it is the largest layer and changes least often, so it stays cached.
RUN pip install ${TORCH_SPEC}

# The package without test extras. Its source is removed after the install, so that
# only the installed copy can be imported.
COPY pyproject.toml README.md /tmp/src/
COPY nmt /tmp/src/nmt
COPY training /tmp/src/training
COPY service /tmp/src/service
RUN pip install /tmp/src && rm -rf /tmp/src

RUN useradd --user-group --uid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin nmt
WORKDIR /app
# Owned by the service user, so that files saved with mode 0600 are still readable.
COPY --chown=nmt:nmt models /app/models
USER nmt

ENV NMT_MODEL_DIR=/app/models/hi-en
EXPOSE 8000
# /ready, not /health: a container whose model failed to load must not count as healthy.
# urlopen raises on a 503, which exits with status 1 (unhealthy).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=4).status != 200)"]
CMD ["nmt", "serve", "--host", "0.0.0.0", "--port", "8000"]
