"""Connecting to Ray: an existing cluster (``address``), or a local one that listens on the
loopback address only.

By default a local Ray registers the machine's network address and its servers (GCS, raylet,
every worker's gRPC server, the agents) listen on it. A local cluster has no reason to be
reachable from the network: we keep its node address on 127.0.0.1, which is what Ray does on
macOS and Windows. The switch is Ray's ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read when
``ray`` is first imported, so :func:`import_ray` sets it before that import.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import sys
import warnings

from ..errors import install_hint
from ..runtime import ray_address

LOOPBACK = "127.0.0.1"
_LOCAL_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def import_ray():
    """``import ray``, with a local cluster kept on the loopback address when ray is imported here
    first. Raises ImportError naming the extra when Ray is missing."""
    if "ray" not in sys.modules:
        os.environ.setdefault(_LOCAL_ONLY, "0")
    try:
        import ray
    except ImportError:
        raise ImportError(f"running on Ray needs the ray extra: {install_hint('ray')}") from None
    return ray


@contextlib.contextmanager
def connected(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None):
    """Use the Ray this process is already connected to; else connect to ``address`` (``auto``,
    ``ray://host:10001``, ``host:6379``; default ``$RAY_ADDRESS``); else start a local cluster on
    127.0.0.1 with ``num_cpus``/``num_gpus`` (default: all of this machine's). Disconnects (and
    stops a local cluster) on exit when it connected here."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    address = address or ray_address()
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, _node_ip_address=LOOPBACK,
                 include_dashboard=False)
        node = ray.util.get_node_ip_address()
        if not ipaddress.ip_address(node).is_loopback:
            warnings.warn(f"the local Ray cluster registered {node}, not {LOOPBACK}: ray was imported before "
                          f"vxl_fast.distributed; set {_LOCAL_ONLY}=0 before importing ray to keep it local",
                          stacklevel=3)
    try:
        yield ray
    finally:
        ray.shutdown()
