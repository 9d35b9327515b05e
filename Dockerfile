# A worker: `docker build -t iris_app .` then
#   docker run --rm -e KAFKA_BROKER=kafka://kafka:9092 iris_app
FROM python:3.11-slim-bookworm

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
USER iris
VOLUME /app/iris_app-data
EXPOSE 6066

CMD ["faust", "-A", "iris_app", "worker", "-l", "info"]
