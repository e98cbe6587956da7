"""``python -m pytest_clover.vnf COMPONENT [--host H] [--port P] [--upstream URL]``.

Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 1 if the listening
socket cannot be opened, 2 for bad arguments or bad configuration in the
environment. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from aiohttp import web

from .common import COMPONENTS, DEFAULT_HOST, DEFAULT_PORT, SERVICE_NAMES, InvalidSetting, log
from .components import build_component, describe

# Short enough that a pod-kill or restart test is not held up by a
# keep-alive client, long enough for in-flight requests to finish.
SHUTDOWN_TIMEOUT_S = 5.0
PROG = "python -m pytest_clover.vnf"


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be in [0, 65535] (got {value})")
    return value


def build_parser() -> argparse.ArgumentParser:
    roles = ", ".join(f"{c} ({SERVICE_NAMES[c]})" for c in COMPONENTS)
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=f"Run one component of the SDC sample VNF: {roles}.",
        epilog=(
            "Environment: POD_NAME, POD_NAMESPACE, POD_VERSION, POD_IP, CLOVER_SEED, "
            "CLOVER_UPSTREAM, CLOVER_UPSTREAM_TIMEOUT, CLOVER_DENY (proxy), "
            "CLOVER_SERVER_CONFIG (server), CLOVER_IDS_RULES (ids), CLOVER_LOG_LEVEL, "
            "HTTP_PROXY/NO_PROXY (upstream calls go through the sidecar)."
        ),
    )
    parser.add_argument("component", choices=COMPONENTS)
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"default {DEFAULT_HOST}")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    parser.add_argument(
        "--upstream",
        default=None,
        help="upstream base URL (proxy, lb only); default $CLOVER_UPSTREAM, then "
        "http://http-lb:9180 for proxy and http://clover-server:9180 for lb",
    )
    return parser


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        component = build_component(args.component, args.upstream)
        app = component.build_app()
    except InvalidSetting as exc:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: {exc.message}", file=sys.stderr)
        return 2
    level = os.environ.get("CLOVER_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    log.info("sdc %s listening on %s:%d", describe(component), args.host, args.port)
    try:
        web.run_app(
            app,
            host=args.host,
            port=args.port,
            access_log=None,
            handle_signals=True,
            print=None,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
            loop=_new_event_loop(),
        )
    except OSError as exc:
        print(f"{PROG}: error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    log.info("sdc %s stopped", args.component)
    return 0


if __name__ == "__main__":
    sys.exit(main())
