"""poseops: reproducible, distributed pose-estimation workflows (DVC, Ray, MLflow)."""

__version__ = "0.1.0"
