"""An OpenAI-compatible HTTP server: ``vxl-fast serve``, or :func:`create_app` to embed it.

Needs the ``serve`` extra (FastAPI and uvicorn): ``pip install --no-build-isolation ".[serve]"`` in
the checkout. Importing this package does not: ``cli.add_parser`` works without them.
"""

__all__ = ["create_app", "ServeOptions"]


def __getattr__(name: str):
    if name == "create_app":
        from .app import create_app
        return create_app
    if name == "ServeOptions":
        from .options import ServeOptions
        return ServeOptions
    raise AttributeError(f"module 'vxl_fast.server' has no attribute {name!r}")
