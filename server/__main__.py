"""``diffill serve`` / ``python -m server``: start the language server on stdio (default) or TCP."""
from __future__ import annotations

import argparse
import logging
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stdio", action="store_true", help="talk LSP over stdin/stdout (the default)")
    p.add_argument("--tcp", metavar="HOST:PORT", help="listen on TCP instead of stdio")
    p.add_argument("--model", help="model path or name; overrides the editor's 'model' setting")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def serve(args) -> int:
    from .app import create_server
    from .logs import setup_logging
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()  # editors log every stderr line as an error
    server = create_server(args.model)
    path = setup_logging(server, level=getattr(logging, args.log_level))
    logging.getLogger("pygls").setLevel(logging.WARNING)  # pygls logs every message, document text included
    logging.getLogger("diffill").info("Diffill server starting (log file: %s)", path)
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        server.start_tcp(host or "127.0.0.1", int(port))
    else:
        server.start_io()
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="diffill serve", description=__doc__)
    add_arguments(ap)
    return serve(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
