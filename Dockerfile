# The demo app of docker-compose.yml: the package installed from this checkout, running
# `tornado-memory-exporter demo` (its Prometheus/Alertmanager come from the compose stack).
FROM python:3.11.10-slim-bookworm

WORKDIR /build
COPY pyproject.toml README.md LICENSE MANIFEST.in ./
COPY exporter ./exporter
RUN pip install --no-cache-dir . && rm -rf /build
WORKDIR /

USER nobody
EXPOSE 8888
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8888/metrics', timeout=2)"]
CMD ["tornado-memory-exporter", "demo", "--address", "0.0.0.0", "--port", "8888", "--no-stack"]
