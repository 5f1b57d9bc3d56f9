"""gantrack: an experiment-tracked DCGAN pipeline (DVC stages, MLflow runs, Optuna search)."""

__version__ = "0.1.0"
