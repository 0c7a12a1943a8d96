"""`mjave serve MODEL` (and `python -m mjave.serving MODEL`): serve a model folder over HTTP.

FastAPI and uvicorn are imported only when the command runs, so `mjave` works without the
[serve] extra and says how to install it when it is missing. The default host is 127.0.0.1:
the service has no authentication, so exposing it is an explicit choice (`--host 0.0.0.0`).
`mjave review` binds its page with the same checks (`serve_extra_missing`, `warn_if_exposed`)
and stops as `mjave serve` does (`serve_app`).

Shutdown (SIGTERM or Ctrl-C) is quiet: the micro-batcher first finishes what is queued for up to
`--shutdown-timeout` seconds and answers the rest 503, so uvicorn never has to cancel a waiting
request (each cancellation logged a traceback); SIGTERM then exits 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

from mjave.cli.console import add_threads_option, apply_threads, fail, setup_logging

LOG_LEVELS = ["critical", "error", "warning", "info", "debug"]


def serve_extra_missing(command: str = "mjave serve") -> str | None:
    """The install hint when FastAPI or uvicorn (the [serve] extra) cannot be imported."""
    try:
        import fastapi  # noqa: F401
        import fastapi_offline  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        return f"{command} needs the [serve] extra: pip install 'mjave[serve]'"
    return None


def image_root_error(image_root: str | None) -> str | None:
    """Why `--image-root` cannot be served from (it is not a folder), or None."""
    if image_root is not None and not Path(image_root).is_dir():
        return f"--image-root is not a folder: {image_root}"
    return None


def warn_if_exposed(host: str, what: str) -> None:
    """Say on stderr that binding `host` puts `what`, which has no authentication, on the
    network."""
    from mjave.serving.config import is_loopback
    if not is_loopback(host):
        print(f"warning: binding {host}: {what} is reachable from other machines and has no "
              "authentication", file=sys.stderr)


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    from mjave.serving.config import DEFAULTS
    p.add_argument("model", help="model folder written by `mjave train`")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1, loopback only; the service has no "
                        "authentication)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    p.add_argument("--image-root", metavar="DIR",
                   help="folder that requests' image_path may read from (default: image_path "
                        "refused)")
    p.add_argument("--max-batch-size", type=int, default=DEFAULTS["max_batch_size"], metavar="N",
                   help="items per model call (default %(default)s)")
    p.add_argument("--max-wait-ms", type=float, default=DEFAULTS["max_wait_ms"], metavar="M",
                   help="how long an item may wait for others to fill a batch "
                        "(default %(default)s)")
    p.add_argument("--max-request-items", type=int, default=DEFAULTS["max_request_items"],
                   metavar="N", help="items per request (default %(default)s)")
    p.add_argument("--request-timeout", type=float, default=DEFAULTS["request_timeout_s"],
                   metavar="S", help="deadline of one request in seconds: past it the client "
                   "gets 504 and its items not yet computed are dropped (0: no deadline; "
                   "default %(default)s)")
    p.add_argument("--shutdown-timeout", type=float, default=DEFAULTS["shutdown_timeout_s"],
                   metavar="S", help="on SIGTERM / Ctrl-C, how long queued items may still be "
                   "computed before the rest are answered 503 (default %(default)s)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    add_threads_option(p)
    p.add_argument("--log-level", default="info", choices=LOG_LEVELS,
                   help="server log level (default: info)")


def cmd_serve(args: argparse.Namespace) -> int:
    """Load the model, then run uvicorn until interrupted (Ctrl-C / SIGTERM: graceful stop)."""
    hint = serve_extra_missing()
    if hint:
        return fail(hint)
    import uvicorn

    from mjave.serving.config import ServeConfig

    try:
        config = ServeConfig(max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
                             max_request_items=args.max_request_items, image_root=args.image_root,
                             request_timeout_s=args.request_timeout,
                             shutdown_timeout_s=args.shutdown_timeout)
        apply_threads(args.threads)
    except ValueError as e:
        return fail(str(e))
    bad_root = image_root_error(args.image_root)
    if bad_root:
        return fail(bad_root)
    warn_if_exposed(args.host, "the service")
    setup_logging(args.log_level.upper())
    from mjave.inference.extractor import Extractor  # torch: only once the arguments are good
    from mjave.serving.app import create_app
    extractor = Extractor.load(args.model, device=args.device)
    app = create_app(extractor, config)
    serve_app(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def serve_app(app: Any, host: str, port: int, log_level: str = "info",
              sockets: Sequence[Any] | None = None) -> None:
    """Run `app` under uvicorn until SIGTERM or Ctrl-C, then stop quietly: an app of
    `mjave.serving.app.create_app` first drains its batcher for
    `app.state.config.shutdown_timeout_s` before uvicorn waits for the connections, and a
    SIGTERM is not re-raised (the process exits 0). `mjave review` stops the same way."""
    import uvicorn

    batcher = getattr(app.state, "batcher", None)

    class DrainingServer(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            if batcher is not None:
                await batcher.stop(timeout=app.state.config.shutdown_timeout_s)
            await super().shutdown(sockets)

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, server_header=False,
                            timeout_graceful_shutdown=30)
    server = DrainingServer(config)
    # uvicorn re-raises the signal it stopped on once it is done; SIGTERM is a request to stop,
    # and stopping cleanly is a success, so that re-raise is ignored here.
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: None) if in_main else None
    try:
        server.run(sockets=list(sockets) if sockets else None)
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def add_serve_command(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `mjave serve` on the top-level subparsers (see `mjave.cli.build_parser`)."""
    p = commands.add_parser("serve", help="serve a model over HTTP (127.0.0.1 by default)",
                            description="Serve a trained model: POST /v1/extract, GET /healthz, "
                            "/readyz, /v1/model, /openapi.json.")
    add_serve_arguments(p)
    p.set_defaults(func=cmd_serve)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m mjave.serving MODEL [options]`: the same command without the `mjave` CLI."""
    from mjave.cli.entry import run
    parser = argparse.ArgumentParser(prog="python -m mjave.serving",
                                     description="Serve a trained M-JAVE model over HTTP.")
    add_serve_arguments(parser)
    parser.set_defaults(func=cmd_serve)
    return run(parser.parse_args(argv))


__all__ = ["add_serve_arguments", "add_serve_command", "cmd_serve",
           "image_root_error", "main", "serve_app", "serve_extra_missing", "warn_if_exposed"]
