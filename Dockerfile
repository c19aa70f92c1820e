# Watchkeeper's Airflow image: the official apache/airflow image of the pinned Airflow version,
# plus the project's lock (uv.lock) with its `production` dependency group (Celery executor,
# Redis client, PostgreSQL provider). Built by docker-compose.yaml (`make up`); any Airflow
# deployment that runs custom images (Kubernetes, the Helm chart, a managed service that accepts
# images) can run it as it is.
#
# The project's code is not installed as a package: Airflow puts plugins/ on sys.path, and the
# library lives in plugins/watchkeeper/. The folders are copied in, so the image runs on its own;
# docker-compose.yaml mounts the checkout's folders over them for development.

ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}
ARG AIRFLOW_VERSION

USER airflow
WORKDIR /opt/airflow

# The exact versions of the lock, nothing resolved at build time. The official image ships uv
# and installs into its own environment; pinning apache-airflow keeps the image's Airflow.
COPY --chown=airflow:0 pyproject.toml uv.lock /opt/watchkeeper/
RUN uv export --project /opt/watchkeeper --frozen --no-dev --group production \
        --no-emit-project --format requirements.txt --output-file /tmp/requirements.txt \
    && uv pip install --no-cache "apache-airflow==${AIRFLOW_VERSION}" \
        --requirement /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# WATCHKEEPER_HOME exists in the image, owned by airflow, so a named volume mounted there
# starts out writable.
RUN mkdir -p /opt/airflow/watchkeeper

COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 include/ /opt/airflow/include/
COPY --chown=airflow:0 expectations/ /opt/airflow/expectations/

# paths.project_root() resolves to /opt/airflow (plugins/watchkeeper/ is two levels down);
# plain `python -m watchkeeper.cli ...` in a container finds the library too.
ENV PYTHONPATH=/opt/airflow/plugins \
    WATCHKEEPER_HOME=/opt/airflow/watchkeeper
