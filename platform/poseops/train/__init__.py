"""The train workload: Ray Train over any task (fit.py), the per-worker loop (loop.py), MLflow logging (report.py)."""
