# syntax=docker/dockerfile:1
# Every Shop image: SERVICE picks the package, PORT its port; the order image also runs the
# outbox relay as its alternative command. Build from the repository root (docker-compose.yml
# passes the same arguments):
#   docker build --build-arg SERVICE=user_service --build-arg PORT=8082 -t shop/user-service:dev .
#   docker build --build-arg SERVICE=order_service --build-arg PORT=8080 \
#       --build-arg WEB_CONCURRENCY=1 --build-arg GUNICORN_WORKER_CLASS=gevent \
#       -t shop/order-service:dev .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG SERVICE
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# The pinned runtime closure first: this layer is reused until the lock changes, and shared by
# the three images.
COPY deploy/requirements.txt deploy/requirements.txt
RUN pip install --no-cache-dir -r deploy/requirements.txt
COPY pyproject.toml ./
COPY common common
# shopctl too: `shopctl users show-admin`, `shopctl outbox status` and compose's
# `shopctl secrets init` run inside the images.
COPY shopctl shopctl
COPY ${SERVICE} ${SERVICE}
RUN pip install --no-cache-dir --no-deps .

FROM ${PYTHON_IMAGE}
ARG SERVICE
ARG PORT
# gunicorn's defaults for this image; compose and the Kubernetes ConfigMaps set them too.
ARG WEB_CONCURRENCY=2
ARG GUNICORN_WORKER_CLASS=gthread
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SERVICE_PACKAGE=${SERVICE} \
    PORT=${PORT} \
    WEB_CONCURRENCY=${WEB_CONCURRENCY} \
    GUNICORN_WORKER_CLASS=${GUNICORN_WORKER_CLASS}
# The mount points of compose's secrets volumes: a new named volume takes the owner and mode
# of the directory it is mounted on, so `secrets-init`, running as 10001, can write there and
# no one else can read.
RUN groupadd --system --gid 10001 shop \
    && useradd --system --uid 10001 --gid shop --no-create-home --shell /usr/sbin/nologin shop \
    && install -d -o shop -g shop -m 0700 \
        /run/shop-secrets/user /run/shop-secrets/product /run/shop-secrets/order
COPY --from=build /opt/venv /opt/venv
COPY deploy/docker/entrypoint.sh /usr/local/bin/shop-entrypoint
WORKDIR /app
USER 10001:10001
EXPOSE ${PORT}
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['PORT'] + '/health', timeout=2)"]
ENTRYPOINT ["/usr/local/bin/shop-entrypoint"]
CMD ["serve"]
