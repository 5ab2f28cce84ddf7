"""`loraplane-evaluation` / `python -m loraplane_server.evaluation`: serve a session's rating page."""

from __future__ import annotations

import logging
import os

import click
from aiohttp import web

from .app import RatingServer


@click.command(context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "LORAPLANE_EVAL"})
@click.option("--session", "session_dir", required=True, type=click.Path(file_okay=False, exists=True),
              help="Session directory made by `loraplane eval create`.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--log-level", default="INFO", show_default=True)
def main(session_dir: str, host: str, port: int, log_level: str) -> None:
    """Serve the blind rating page of one evaluation session."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        server = RatingServer(session_dir)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    logging.getLogger(__name__).info("rating page for session %s on %s:%d (pid %d)", server.session.id, host, port,
                                     os.getpid())
    web.run_app(server.app(), host=host, port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
