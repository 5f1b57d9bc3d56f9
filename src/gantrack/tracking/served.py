"""The code file of a logged generator (MLflow models from code): gantrack.tracking.serving."""

import mlflow

from gantrack.tracking.serving import Generator

mlflow.models.set_model(Generator())
