"""``python -m serving.api [--host H] [--port P] [--workers N]``: run the API."""

from __future__ import annotations

import argparse
import logging

from serving.api.serve import serve


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve (blocks)."""
    parser = argparse.ArgumentParser(prog="python -m serving.api", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    serve(host=args.host, port=args.port, workers=args.workers, log_level=args.log_level)


if __name__ == "__main__":
    main()
