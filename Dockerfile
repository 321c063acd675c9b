# syntax=docker/dockerfile:1
# qchem-events container image: `docker build -t qchem-events .`
# Two stages: the builder compiles the wheel and its dependencies into a virtualenv; the
# runtime stage copies only that virtualenv onto a slim base and runs it as a non-root user.
# (Images cannot be built on the project's CI machines: CI lints this file with hadolint.)

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/qchem-events
# The dependencies ship as manylinux wheels (confluent-kafka bundles librdkafka,
# psycopg2-binary bundles libpq), so no compiler or -dev packages are needed here.
COPY pyproject.toml README.md ./
COPY common/ common/
COPY consumers/ consumers/
COPY schemas/ schemas/
COPY retry_topics/ retry_topics/
COPY storage/ storage/
COPY ops/ ops/
# With the [otel] extra: tracing stays off until OTEL_TRACES_EXPORTER names an exporter.
RUN /opt/qchem-events/bin/pip install --no-compile '.[otel]' \
    && /opt/qchem-events/bin/python -m compileall -q /opt/qchem-events/lib

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="qchem-events" \
      org.opencontainers.image.description="Reliable Kafka consumers for Q-Chem events"
# A fixed numeric uid/gid so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 qchem \
    && useradd --system --uid 10001 --gid qchem --no-create-home --shell /usr/sbin/nologin qchem
COPY --from=builder /opt/qchem-events /opt/qchem-events
ENV PATH=/opt/qchem-events/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOG_FORMAT=json \
    METRICS_HOST=0.0.0.0 \
    METRICS_PORT=9400
# Settings are read from the environment and an optional ./.env; an empty, unwritable
# working directory keeps a stray .env out of the image.
WORKDIR /app
USER 10001:10001
# /metrics, /healthz, /readyz (ops/http.py), bound on all interfaces for the scraper.
EXPOSE 9400
ENTRYPOINT ["qchem-events"]
CMD ["run"]
