# One image for every process: python -m runtime serve public|internal, worker, migrate.
# Python minor pinned like the original pinned Node; pyproject.toml says requires-python >= 3.11.
ARG PYTHON_VERSION=3.11

# Build stage: the full Debian image has the compilers. Every dependency becomes a wheel here
# (prebuilt where PyPI has one, compiled here otherwise), so the runtime stage compiles nothing.
FROM python:${PYTHON_VERSION}-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY lib ./lib
COPY runtime ./runtime
COPY functions ./functions
COPY migrations ./migrations
RUN pip wheel --wheel-dir /wheels .

# Runtime stage: slim, same Python minor, only the wheels, a fixed non-root user. A forgotten
# APP_ENV is production (no development routes or stubs); staging and tests set theirs.
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    APP_ENV=production \
    LOG_FORMAT=json
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app
COPY --from=build /wheels /wheels
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-index --find-links=/wheels /wheels/halobestie_backend-*.whl \
    && rm -rf /wheels
# Nothing is written at run time except /tmp (a tmpfs or emptyDir) and /dev/shm (gunicorn's
# heartbeat files), so the root filesystem can be mounted read-only.
VOLUME ["/tmp"]
WORKDIR /nonexistent
USER 10001:10001
EXPOSE 3000 3001 3002
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-m", "runtime.healthcheck"]
ENTRYPOINT ["python", "-m", "runtime"]
CMD ["serve", "public"]
