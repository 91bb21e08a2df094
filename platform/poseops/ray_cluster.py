"""Attaching this process to Ray: the one place derive, train, tune and serve connect.

`$RAY_ADDRESS` set (the Makefile's shared instance, a cluster): connect to it; else start a private local
instance. An instance this process already holds is reused. Ray is imported on call, not at import.
"""

from __future__ import annotations

import os
from typing import Any

from poseops.numerics import ray_env_vars


def attach_ray(
    num_cpus: int | None = None,
    include_dashboard: bool | None = False,
    pin_worker_numerics: bool = True,
    **init_kwargs: Any,
):
    """The Ray module, attached to $RAY_ADDRESS when set (token auth: the caller's RAY_AUTH_MODE), else to
    a private local instance of `num_cpus` CPUs (`include_dashboard` as ray.init takes it: None starts the
    dashboard where it is installed); an instance this process already holds is reused.

    pin_worker_numerics: on a cluster, give its workers this process's numerics pins (poseops.numerics) in
        the job's runtime_env; a private local instance inherits this process's environment already.
    init_kwargs: further ray.init arguments (a `namespace`, `log_to_driver`, ...), on either branch.
    """
    import ray

    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        if address:
            if pin_worker_numerics:
                init_kwargs = {"runtime_env": {"env_vars": ray_env_vars()}, **init_kwargs}
            ray.init(address=address, **init_kwargs)
        else:
            ray.init(
                address="local",
                num_cpus=num_cpus,
                include_dashboard=include_dashboard,
                **init_kwargs,
            )
    return ray
