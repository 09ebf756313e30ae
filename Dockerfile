# One image for every Python process of the stack: engine, web (gunicorn), token-refresher and
# the one-shot migrate job. docker-compose.yml chooses the command per service.
#
#   docker build -t nifty-engine .
#   docker run --rm --env-file .env nifty-engine python -m engine migrate
#
# No secrets are baked in: configuration arrives at run time through env_file (.env).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TZ=Asia/Kolkata \
    PYTHONPATH=/app

# tzdata: every market time is IST; slim Debian images do not always ship the zone files.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tzdata \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# 1) Dependencies only, pinned in pyproject.toml [project].dependencies. This layer is cached
#    until pyproject.toml changes, so a code-only deploy rebuilds in seconds.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# 2) The project itself. The source tree stays at /app as well (PYTHONPATH, working directory):
#    the migration runner reads schema/*.sql next to the package and gunicorn reads
#    web/gunicorn.conf.py by path.
COPY . .
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --user-group --home-dir /app --no-create-home app \
    && mkdir -p /app/logs /app/var \
    && chown -R app:app /app/logs /app/var

USER app

EXPOSE 8080

# Generic liveness probe (ops/healthcheck.py): GET $HEALTHCHECK_URL when set (the web service
# sets it to /api/health), otherwise a SELECT 1 through DATABASE_URL.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/app/ops/healthcheck.py"]

CMD ["python", "-m", "engine", "run"]
