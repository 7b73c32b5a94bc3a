# keynews daemon image: slim Python, non-root, database and rules on volumes.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    KEYNEWS_DATABASE_URL=sqlite:////data/keynews.db \
    KEYNEWS_RULES_DIR=/app/rules \
    KEYNEWS_OUTBOX_DIR=/data/outbox \
    KEYNEWS_TEMPLATES_DIR=/app/templates

WORKDIR /app
COPY pyproject.toml README.md ./
COPY daemon ./daemon
COPY templates ./templates
COPY rules ./rules
RUN pip install ".[postgres]" \
 && useradd --system --uid 10001 --home-dir /app keynews \
 && mkdir -p /data && chown keynews /data

USER keynews
VOLUME ["/data", "/app/rules"]
EXPOSE 8025
HEALTHCHECK CMD ["keynews", "version"]
CMD ["keynews", "run"]
