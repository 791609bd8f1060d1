"""``python -m adapter.compat [--router E] [--pub E] SCRIPT [ARGS...]``"""

from __future__ import annotations

import argparse
import logging
import sys

from .runner import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapter.compat",
                                     description="Run an xtquant strategy script against a qmt-zmq-adapter gateway.")
    parser.add_argument("--router", help="gateway ROUTER endpoint (env QMT_ADAPTER_ROUTER)")
    parser.add_argument("--pub", help="gateway PUB endpoint (env QMT_ADAPTER_PUB)")
    parser.add_argument("script")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(options.script, options.args, options.router, options.pub)


if __name__ == "__main__":
    sys.exit(main())
