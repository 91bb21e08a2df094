"""MLflow tracking for poseops: the store (`store`), runs and metrics (`runs`), the registry and
promotion gates (`registry`). Imports only MLflow and the base modules; never `poseops.models`.

Import the submodules you need (`from poseops.tracking import runs`); nothing runs at import time.
"""
