# syntax=docker/dockerfile:1
# One image for every WebhookMaster component; the command picks the component
# (`gateway`, `agent`, `scheduler`, `projector`, `init`, ...).
#
# Two stages: the builder turns the project and its dependencies into wheels; the runtime stage
# installs those wheels only (no compiler, no pip cache, no sources). The build context holds the
# runtime packages alone: the local development stack (devstack/), the tests and the benchmarks
# are neither copied nor in the wheel (tests/deploy/test_compose_and_image.py builds that wheel).
#
# Health: one image runs four components on four ports, so it declares no HEALTHCHECK; probe
# the component's own port instead: GET /readyz (ready) and /healthz (alive) on WM_GATEWAY_PORT
# (gateway) or WM_AGENT_PORT / WM_SCHEDULER_PORT / WM_PROJECTOR_PORT (docker-compose.yml's
# healthchecks and the Kubernetes probes do this).

FROM python:3.11.14-slim-trixie AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY webhookmaster ./webhookmaster
COPY schemas ./schemas
COPY ingest_gateway ./ingest_gateway
COPY delivery_agents ./delivery_agents
COPY retry_scheduler ./retry_scheduler
COPY status_projector ./status_projector
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11.14-slim-trixie AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 WM_GATEWAY_HOST=0.0.0.0 WM_HEALTH_HOST=0.0.0.0
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/webhookmaster-*.whl
WORKDIR /app
USER 10001:10001
EXPOSE 28080 29101 29102 29103
ENTRYPOINT ["webhookmaster"]
CMD ["--help"]
