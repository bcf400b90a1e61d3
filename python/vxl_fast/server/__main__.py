"""``python -m vxl_fast.server``: the same as ``vxl-fast serve`` (without ``--ray``, which
``vxl-fast serve`` adds from :mod:`vxl_fast.distributed.cli`)."""

import argparse
import sys

from .cli import add_parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vxl_fast.server")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.run(args)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
        print(f"vxl-fast serve: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
