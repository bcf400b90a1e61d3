"""Many videos over many GPUs and machines with Ray (the ``ray`` extra).

``run_batch`` answers a JSONL file of requests with Ray actors that each hold one loaded model
(``vxl-fast batch``); :mod:`.serve` deploys the OpenAI-compatible server on Ray Serve
(``vxl-fast serve --ray``). Importing this package does not import Ray.
"""

from .batch import BatchSummary, WorkerError, run_batch
from .records import read_records

__all__ = ["run_batch", "BatchSummary", "WorkerError", "read_records"]
