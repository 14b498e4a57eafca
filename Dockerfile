# syntax=docker/dockerfile:1
# Persais: one image for the web and worker processes (see fly.toml [processes]).

ARG PYTHON_VERSION=3.12

# --- build: two virtualenvs, Persais and the pinned Aider, each on its own -------------
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential git \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app

# Aider first: its pin changes rarely, so this layer stays cached across code changes.
COPY mechanic/aider_version.py mechanic/aider_version.py
RUN python -m venv /opt/aider \
 && /opt/aider/bin/pip install \
      "aider-chat==$(sed -n 's/^AIDER_CHAT_VERSION = "\(.*\)"$/\1/p' mechanic/aider_version.py)"

COPY pyproject.toml README.md ./
COPY app app
COPY mechanic mechanic
# Editable from /app, the path the runtime stage keeps: the code finds templates/ and
# dynamic/ beside itself (CHECKOUT_ROOT in app/settings.py), as in a checkout. Installed
# into site-packages instead, it looked for them there and found neither.
RUN python -m venv /opt/persais && /opt/persais/bin/pip install -e . \
 && python -m compileall -q app mechanic

# --- runtime: slim, git for the Mechanic, a non-root user -------------------------------
FROM python:${PYTHON_VERSION}-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates bubblewrap \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 persais \
 && mkdir -p /data && chown persais:persais /data

COPY --from=build /opt/aider /opt/aider
COPY --from=build /opt/persais /opt/persais
COPY --from=build /app/app /app/app
COPY --from=build /app/mechanic /app/mechanic
COPY --chown=persais:persais dynamic /app/dynamic
COPY --chown=persais:persais templates /app/templates

ARG GIT_COMMIT=unknown
# MALLOC_ARENA_MAX=2: `persais serve` idles 8 MB lower with two glibc malloc arenas than
# with the default (3 runs of bench/footprint.py --arena; docs/benchmarks.md).
ENV MALLOC_ARENA_MAX=2 \
    PATH=/opt/persais/bin:$PATH \
    AIDER_BIN=/opt/aider/bin/aider \
    PERSAIS_HOME=/data \
    PERSAIS_REQUIRE_SANDBOX=true \
    PERSAIS_GIT_COMMIT=${GIT_COMMIT} \
    PYTHONUNBUFFERED=1
WORKDIR /app
USER persais
EXPOSE 8080
CMD ["persais", "serve", "--host", "0.0.0.0", "--port", "8080"]
