"""The ``jobtrio`` command line."""

from __future__ import annotations

import argparse
import logging
import sys

import trio

from .config import ConfigError, Settings
from .processors import Registry, load_app


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(dotenv_path=args.env_file)
    except ConfigError as exc:
        print(f"jobtrio: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    registry = Registry()
    if args.app:
        try:
            registry.update(load_app(args.app))
        except ValueError as exc:
            print(f"jobtrio: {exc}", file=sys.stderr)
            return 2
    from .server import serve

    trio.run(serve, settings, registry)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jobtrio", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run a node (embedded SQLite unless Redis is configured)")
    serve.add_argument("--app", help="module:attribute of a Registry with your processors")
    serve.add_argument("--env-file", default=".env", help="settings file (default .env)")
    serve.set_defaults(func=_serve)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
