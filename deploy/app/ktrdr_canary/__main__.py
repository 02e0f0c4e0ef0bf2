"""Command line: ``python -m ktrdr_canary {backend,worker} [--host H] [--port P]``.

The same image can play every role; compose picks one with ``command:``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import uvicorn

DEFAULT_PORTS = {"backend": 8000, "worker": 5003}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ktrdr_canary")
    parser.add_argument("role", choices=sorted(DEFAULT_PORTS))
    # All interfaces: the server runs in a container and is reached through published ports.
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))  # noqa: S104
    parser.add_argument("--port", type=int, default=None, help="default: $PORT or the role's port")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "info"))
    args = parser.parse_args(argv)

    port = args.port or int(os.environ.get("PORT", DEFAULT_PORTS[args.role]))
    # The worker derives its default endpoint URL from the port it really listens on.
    os.environ["PORT"] = str(port)

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # One line per request (heartbeats every few seconds) is noise; keep httpx quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # /api/v1/health inspects the alembic version table on every call: no per-call chatter.
    logging.getLogger("alembic").setLevel(logging.WARNING)

    app = "ktrdr_canary.backend:app" if args.role == "backend" else "ktrdr_canary.worker:app"
    uvicorn.run(app, host=args.host, port=port, log_level=args.log_level, access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
