# syntax=docker/dockerfile:1
# One image for every process; the command picks it:
#   web (default): daphne --verbosity 0 -b 0.0.0.0 -p 8000 autoflow.asgi:application
#   worker:        celery -A autoflow worker -l info
#   beat:          celery -A autoflow beat -l info --pidfile /tmp/celerybeat.pid
#   one-offs:      python manage.py migrate | createsuperuser | prune_executions ...
# Build: docker build -t autoflow .   (target: under 300 MB)

# --- Stage 1: resolve and install the runtime dependencies into a virtualenv ---------------
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
COPY pyproject.toml ./
# Only [project].dependencies: the dev extra (pytest, mypy, ruff, stubs) never reaches the image.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install -r requirements.txt \
    && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
    && find /opt/venv -name 'tests' -path '*site-packages/*/tests' -prune -exec rm -rf {} +

# --- Stage 2: the runtime image --------------------------------------------------------------
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DEBUG=false \
    LOG_FORMAT=json
RUN groupadd --system --gid 10001 autoflow \
    && useradd --system --uid 10001 --gid autoflow --home-dir /app --shell /usr/sbin/nologin autoflow
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY --chown=autoflow:autoflow . .
# Static files are collected at build (hashed names for whitenoise). The keys below exist only
# for this RUN so settings load with DEBUG=false; the real ones come from the environment.
RUN SECRET_KEY=build-only JWT_SIGNING_KEY=build-only \
    AUTOFLOW_ENCRYPTION_KEY=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
    REDIS_URL=redis://127.0.0.1:6379/0 DATABASE_URL=postgres://build@127.0.0.1:5432/build \
    python manage.py collectstatic --noinput \
    && chown -R autoflow:autoflow /app/staticfiles
USER autoflow
EXPOSE 8000
# The web process's check; compose gives the worker and beat their own (they serve no HTTP).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status == 200 else 1)"]
# No --proxy-headers: the client address stays REMOTE_ADDR and TRUSTED_PROXY_COUNT decides
# which X-Forwarded-For hops to believe (a forged header must not pass the /metrics loopback rule).
# --verbosity 0: no access log of daphne's own, in its own format; AutoFlow logs each request as JSON.
CMD ["daphne", "--verbosity", "0", "-b", "0.0.0.0", "-p", "8000", "autoflow.asgi:application"]
