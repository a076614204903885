"""``diffill serve`` / ``python -m server``: start the language server on stdio (default) or TCP."""
from __future__ import annotations

import argparse
import logging
import sys


LOOPBACK = "127.0.0.1"


def parse_tcp(value: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` -> (host, port); the host defaults to the loopback interface."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "", value
    host = host.strip("[]") or LOOPBACK  # [::1]:2087
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--tcp takes HOST:PORT or PORT, not {value!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"port {number} is out of range")
    return host, number


def is_loopback(host: str) -> bool:
    import ipaddress
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stdio", action="store_true", help="talk LSP over stdin/stdout (the default)")
    p.add_argument("--tcp", metavar="HOST:PORT", type=parse_tcp,
                   help=f"listen on TCP instead of stdio (HOST defaults to {LOOPBACK}; anything else lets "
                        "other machines drive the server)")
    p.add_argument("--model", help="model path or name; overrides the editor's 'model' setting")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def serve(args) -> int:
    from .app import create_server
    from .logs import setup_logging
    # No transformers here: a native (BERT) model starts without it. A model that needs it turns its
    # progress bars off when it loads (model/loading.py), as editors log every stderr line as an error.
    server = create_server(args.model)
    path = setup_logging(server, level=getattr(logging, args.log_level))
    logging.getLogger("pygls").setLevel(logging.WARNING)  # pygls logs every message, document text included
    logging.getLogger("diffill").info("Diffill server starting (log file: %s)", path)
    if args.tcp:
        host, port = args.tcp if isinstance(args.tcp, tuple) else parse_tcp(args.tcp)
        if not is_loopback(host):
            logging.getLogger("diffill").warning(
                "listening on %s: any machine that can reach it can use this server", host)
            print(f"diffill serve: warning: --tcp {host} is not a loopback address; any machine that can reach "
                  "it can use this server", file=sys.stderr)
        server.start_tcp(host, port)
    else:
        server.start_io()  # returns when the input closes (the editor quit or died) or after `exit`
    server.worker.stop(wait=2.0)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="diffill serve", description=__doc__)
    add_arguments(ap)
    return serve(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
