# smsrelay: one image for the worker (default) and the API (`docker run … api`).
# Small: a wheel built in a throw-away stage, installed on python:slim without pip's cache.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /var/lib/smsrelay smsrelay
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels smsrelay && rm -rf /wheels
USER 10001
WORKDIR /var/lib/smsrelay
# JSON logs; listen beyond loopback inside the container; the worker serves
# /metrics, /healthz and /readyz on 9464, the API everything on 8080.
ENV PYTHONUNBUFFERED=1 \
    SMSRELAY_LOG_FORMAT=json \
    SMSRELAY_API_HOST=0.0.0.0 \
    SMSRELAY_METRICS_HOST=0.0.0.0 \
    SMSRELAY_METRICS_PORT=9464
EXPOSE 8080 9464
# Alive when the API (8080) or the worker (9464) answers /healthz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-m", "smsrelay.healthcheck"]
ENTRYPOINT ["smsrelay"]
CMD ["worker"]
