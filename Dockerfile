# passpush on the official Apache Airflow image: the package, its DAGs, plugins and SQL.
#
#   docker build -t passpush-airflow:3.3.2 .          (docker compose builds it for you)
#
# Python 3.11: passpush requires it (pyproject: >=3.11,<3.12), so the image's python3.11 variant.
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

ARG AIRFLOW_VERSION=3.3.2

# The project lives in /opt/passpush; paths.py finds sql/ and include/ from PASSPUSH_PROJECT_ROOT.
ENV PASSPUSH_PROJECT_ROOT=/opt/passpush \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/passpush/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/passpush/plugins

COPY --chown=airflow:0 pyproject.toml README.md constraints.txt /opt/passpush/
COPY --chown=airflow:0 include /opt/passpush/include
COPY --chown=airflow:0 sql /opt/passpush/sql
COPY --chown=airflow:0 dags /opt/passpush/dags
COPY --chown=airflow:0 plugins /opt/passpush/plugins

# As the airflow user (the image refuses pip as root). Airflow is pinned to the image's own version
# so passpush's dependencies cannot move it, and the rest comes at the versions the tests ran with
# (constraints.txt); editable, so every file under include/ is used in place.
USER airflow
# The uploads volume (docker-compose.yaml) takes this folder's owner: the airflow user, who writes uploads
RUN mkdir -p /opt/airflow/uploads
RUN pip install --no-cache-dir -c /opt/passpush/constraints.txt "apache-airflow==${AIRFLOW_VERSION}" -e /opt/passpush
