# partnerbot: the bot, the HTTP server (Stripe webhook, /healthz), the metrics listener
# (/metrics) and the scheduler in one process. Configuration comes from PARTNERBOT_*
# environment variables (or a TOML file mounted at $PARTNERBOT_CONFIG); the database
# lives on the /data volume.
#
#   docker build -t partnerbot .
#   docker run -d --name partnerbot -v partnerbot-data:/data -p 8080:8080 \
#     -e PARTNERBOT_TELEGRAM__TOKEN=... -e PARTNERBOT_ACCESS__SUPPORT_USER_IDS='[111]' \
#     partnerbot
#
# Metrics (payment counts, days credited) listen on 127.0.0.1:9464 inside the container
# and are not EXPOSEd (so `docker run -P` cannot publish them): scrape them from inside,
# or set PARTNERBOT_METRICS__HOST=0.0.0.0 and publish on a private address only, e.g.
# -p 127.0.0.1:9464:9464 or an internal network.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: install the project exactly as the README does (pip -c constraints.txt) ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY core core
COPY storage storage
COPY bot bot
COPY payments payments
COPY partnerbot partnerbot
RUN python -m venv /opt/partnerbot \
 && /opt/partnerbot/bin/pip install --upgrade pip \
 && /opt/partnerbot/bin/pip install -c constraints.txt .

# ---- runtime: the virtual environment only, as an unprivileged user ----
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 partnerbot \
 && useradd --system --uid 10001 --gid partnerbot --home-dir /data --shell /usr/sbin/nologin partnerbot \
 && mkdir -p /data /data/backups && chown -R partnerbot:partnerbot /data
COPY --from=build /opt/partnerbot /opt/partnerbot
ENV PATH=/opt/partnerbot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PARTNERBOT_DATABASE__PATH=/data/partnerbot.db \
    PARTNERBOT_BACKUP__DIRECTORY=/data/backups \
    PARTNERBOT_SERVER__HOST=0.0.0.0 \
    PARTNERBOT_SERVER__PORT=8080 \
    PARTNERBOT_METRICS__HOST=127.0.0.1 \
    PARTNERBOT_METRICS__PORT=9464 \
    PARTNERBOT_LOGGING__FORMAT=json
USER partnerbot
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"PARTNERBOT_SERVER__PORT\", \"8080\")}/healthz', timeout=4)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["partnerbot"]
CMD ["run"]
