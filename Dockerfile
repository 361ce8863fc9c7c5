# One image for every Airflow-side service of docker-compose.yml (api-server, scheduler,
# dag-processor, triggerer, init) and for the provider sandbox and webhook receiver.
# No ENTRYPOINT: each compose service gives its full command (`airflow ...` or `reactivation ...`).
FROM python:3.11-slim

ENV AIRFLOW_HOME=/opt/airflow \
    DO_NOT_TRACK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# UID 50000 / GID 0 like the official Airflow image, so compose can run it as any host UID in group 0.
RUN useradd --uid 50000 --gid 0 --home-dir /opt/airflow --no-create-home --shell /bin/bash airflow

WORKDIR /opt/airflow

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt /opt/airflow/requirements.txt
RUN pip install --no-cache-dir -r requirements.txt

COPY . /opt/airflow
RUN pip install --no-cache-dir --no-deps -e /opt/airflow \
    && mkdir -p /opt/airflow/logs /opt/airflow/auth /opt/airflow/state /opt/airflow/config \
    && chown -R airflow:0 /opt/airflow \
    && chmod -R g+rwX /opt/airflow

USER airflow

CMD ["airflow", "version"]
