# A worker: `docker build -t iris_app .` then
#   docker run --rm -e KAFKA_BROKER=kafka://kafka:9092 iris_app
FROM python:3.11-slim-bookworm

# Not pinned (DL3008): bookworm's security updates replace openjdk-17's version and drop the old
# one from the archive, so a pin would break the build; the base image tag fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY iris_app/ iris_app/
RUN pip install --no-cache-dir . && rm -rf build iris_app.egg-info
COPY mojo/ mojo/
COPY data/ data/

RUN useradd --create-home --uid 10001 iris && mkdir /app/iris_app-data && chown iris /app/iris_app-data
# By uid (DL3066): Kubernetes' runAsNonRoot can check only a numeric user.
USER 10001
VOLUME /app/iris_app-data
EXPOSE 6066

# Faust web's /health answers 200 once the worker has loaded the model and joined its group, 503
# before (urlopen raises on it, so python exits 1). No curl in the slim image: python asks.
# The worker takes 10-30 s to start; WEB_PORT is the port Faust reads if it is not 6066.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('WEB_PORT', '6066') + '/health', timeout=4)"]

CMD ["faust", "-A", "iris_app", "worker", "-l", "info"]
