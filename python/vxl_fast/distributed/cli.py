"""``vxl-fast batch`` and ``vxl-fast serve --ray``: the options and the commands.
``add_parser(subparsers)`` defines ``batch`` (with ``run=``), ``add_ray_options(serve_parser)``
adds ``--ray`` to the server's ``serve`` (with ``run=serve``); Ray is imported only when they run."""

from __future__ import annotations

import argparse
import json
import sys

from ..runtime import default_model
from ..limits import DEFAULT_FRAMES


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``batch`` to ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    p = subparsers.add_parser(
        "batch", help="answer a JSONL file of requests over many videos with Ray workers; needs the ray extra",
        description="Answer every request of REQUESTS (one JSON object a line: an id, a video and its "
                    "questions) into OUTPUT (one JSON record a line), with Ray actors that each hold one "
                    "loaded model. Rerunning skips the requests already in OUTPUT.")
    p.add_argument("requests", metavar="REQUESTS", help="the request file (JSONL)")
    p.add_argument("-o", "--output", required=True, help="the answers file (JSONL), appended to")
    p.add_argument("--model", default=default_model(),
                   help="checkpoint folder or hub id, readable by every worker (default: $VXL_FAST_MODEL)")
    p.add_argument("--workers", type=int, default=None,
                   help="model replicas (default: one per --gpus-per-worker GPUs of the cluster, else 1)")
    p.add_argument("--gpus-per-worker", type=float, default=None,
                   help="GPUs each worker holds (default: 1 when the cluster has GPUs, else 0: CPU)")
    p.add_argument("--cpus-per-worker", type=float, default=1, help="CPUs each worker holds (default: 1)")
    p.add_argument("--address", default=None,
                   help="an existing Ray cluster: auto, ray://HOST:10001 (default: $RAY_ADDRESS, else a "
                        "local cluster on 127.0.0.1)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when workers hold GPUs)")
    p.add_argument("--dtype", default=None, help="float32, bfloat16 or float16 (default: bfloat16 on cuda)")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                   help=f"frames of a video request that gives neither num_frames nor fps (default: "
                        f"{DEFAULT_FRAMES})")
    p.add_argument("--max-retries", type=int, default=2,
                   help="times a request is run again after its worker dies (default: 2)")
    p.add_argument("--retry-failed", action="store_true", help="run again the requests recorded as errors")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    """Run the batch; 0 when every request is answered, 1 when some failed, 2 on a usage error."""
    from ..preflight import check_budget
    from .batch import WorkerError, run_batch

    if not args.model:
        raise ValueError("no checkpoint: pass --model PATH (or set VXL_FAST_MODEL)")
    check_budget(args.model, "?", 1)  # the checkpoint is named before Ray starts
    try:
        summary = run_batch(args.requests, args.output, args.model, workers=args.workers,
                            gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker,
                            address=args.address, device=args.device, dtype=args.dtype, default_frames=args.frames,
                            max_retries=args.max_retries, retry_failed=args.retry_failed,
                            progress=False if args.quiet or args.json else None)
    except WorkerError as e:
        print(f"vxl-fast batch: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**vars(summary), "requests_per_s": summary.requests_per_s}))
    else:
        print(f"vxl-fast batch: {summary}", file=sys.stderr)
    return 1 if summary.failed else 0


def add_ray_options(serve_parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--ray`` and ``--replicas`` to the ``serve`` parser of :mod:`vxl_fast.server.cli`."""
    serve_parser.add_argument(
        "--ray", action="store_true",
        help="serve on Ray Serve, one model per replica (needs the ray extra; $RAY_ADDRESS or a local cluster "
             "on 127.0.0.1)")
    serve_parser.add_argument("--replicas", type=int, default=1,
                              help="with --ray: model replicas (a GPU each when there are GPUs)")
    serve_parser.set_defaults(run=serve)
    return serve_parser


def serve(args) -> int:
    """``vxl-fast serve``: on Ray Serve with ``--ray``, else the server of :mod:`vxl_fast.server.cli`."""
    from ..device import set_threads
    from ..runtime import omp_threads
    from ..server import cli as server_cli

    if args.replicas != 1 and not args.ray:
        raise ValueError("--replicas needs --ray")
    set_threads(args.threads, omp_threads())
    if not args.ray:
        return server_cli.run(args)
    model, options = server_cli.serve_options(args)
    from .serve import serve_on_ray

    return serve_on_ray(model, options, replicas=args.replicas, host=args.host, port=args.port,
                        device=args.device, dtype=args.dtype)
