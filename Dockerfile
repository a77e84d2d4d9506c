# One image for every process: python -m runtime serve public|internal, worker, migrate.
# Build: docker build --build-arg GIT_REVISION=$(git rev-parse --short HEAD) -t ... . (DEPLOY.md, 2)
# Python minor pinned like the original pinned Node; pyproject.toml says requires-python >= 3.11.
ARG PYTHON_VERSION=3.11
# Base images are pinned by digest (the tag stays for readers; the digest wins): the multi-platform
# image index digests that Docker's official record, github.com/docker-library/repo-info
# (repos/python/remote/3.11-bookworm.md and 3.11-slim-bookworm.md), lists for the two tags, built
# 2026-08-13 and 2026-08-25 with Python 3.11.16. They were read from that record because this
# repository is prepared without registry access. Move them deliberately, with a rebuild and the
# suite, when Debian or Python security updates land (DEPLOY.md, 2):
#   docker buildx imagetools inspect python:3.11-bookworm --format '{{json .Manifest.Digest}}'
#   docker buildx imagetools inspect python:3.11-slim-bookworm --format '{{json .Manifest.Digest}}'
ARG BUILD_IMAGE_DIGEST="@sha256:4e1cfdf61cf02ca7bf29c232218535181a3deb911713e259bb146ea05fdf09ba"
ARG RUNTIME_IMAGE_DIGEST="@sha256:fe556eaffd0d96abd8685b83bb8a69addd0dc730fa193669a7df0d49ddcfac02"

# Build stage: the full Debian image has the compilers. Every dependency is exactly what
# requirements.lock names (`make lock`), each download checked against its sha256; it becomes a
# wheel here (PyPI's where there is one for this platform, compiled here otherwise: gunicorn-h1c),
# so the runtime stage compiles and resolves nothing.
FROM python:${PYTHON_VERSION}-bookworm${BUILD_IMAGE_DIGEST} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements.lock ./
RUN pip wheel --require-hashes --wheel-dir /wheels -r requirements.lock
COPY pyproject.toml README.md ./
COPY lib ./lib
COPY runtime ./runtime
COPY functions ./functions
COPY migrations ./migrations
RUN pip wheel --no-deps --wheel-dir /wheels .

# Runtime stage: slim, same Python minor, only the wheels, a fixed non-root user. A forgotten
# APP_ENV is production (no development routes or stubs); staging and tests set theirs.
FROM python:${PYTHON_VERSION}-slim-bookworm${RUNTIME_IMAGE_DIGEST} AS runtime
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
# The build stage's wheels and nothing else (--no-deps: the lock was resolved already; pip check
# fails the build should a wheel's requirements not be met by the others).
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-index --no-deps /wheels/*.whl \
    && /opt/venv/bin/pip check \
    && rm -rf /wheels
# Nothing is written at run time except /tmp (a tmpfs or emptyDir) and /dev/shm (gunicorn's
# heartbeat files), so the root filesystem can be mounted read-only.
VOLUME ["/tmp"]
WORKDIR /nonexistent
USER 10001:10001
EXPOSE 3000 3001 3002
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-m", "runtime.healthcheck"]
# Last, so a new revision rebuilds no layer above: halobestie_build_info{version} carries it
# (lib/metrics.py; "unknown" when the build passed none).
ARG GIT_REVISION=unknown
ENV GIT_REVISION=${GIT_REVISION}
LABEL org.opencontainers.image.revision=${GIT_REVISION}
ENTRYPOINT ["python", "-m", "runtime"]
CMD ["serve", "public"]
