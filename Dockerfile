# One image for every WebhookMaster component; the command picks the component.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY webhookmaster ./webhookmaster
COPY schemas ./schemas
COPY ingest_gateway ./ingest_gateway
COPY delivery_agents ./delivery_agents
COPY retry_scheduler ./retry_scheduler
COPY status_projector ./status_projector
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["webhookmaster"]
