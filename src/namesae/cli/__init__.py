"""The `namesae` command line: thin typer commands over the library, one module per command."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys

import typer

from namesae.errors import NamesaeError

app = typer.Typer(
    name="namesae",
    help="Sparse autoencoders on CLIP embeddings of names: identity features, emergence and steering.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: "[train]" and "{name}" print as written
)



@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
) -> None:
    """namesae: names -> prompts -> embeddings -> SAE -> features -> identity / groups / emergence -> steering."""
    logging.getLogger("namesae").setLevel(logging.DEBUG if verbose else logging.INFO)


# Each name is a module `namesae.cli.<name>` defining a function of the same name; the CLI contract in DESIGN.md.
COMMANDS = (
    "embed", "generate", "synth", "train", "features", "identity", "groups",
    "emergence", "steer", "basis", "search", "report", "demo",
)

for _name in COMMANDS:
    if importlib.util.find_spec(f"namesae.cli.{_name}") is not None:
        _module = importlib.import_module(f"namesae.cli.{_name}")
        _obj = getattr(_module, _name)
        if isinstance(_obj, typer.Typer):
            app.add_typer(_obj, name=_name)
        else:
            app.command(_name)(_obj)


INTERRUPTED = "namesae: interrupted; run the same command again to resume"


def _from_interrupt(err: BaseException) -> bool:
    """Whether an exception was caused by Ctrl-C (typer turns KeyboardInterrupt into a silent exit 130)."""
    seen = 0
    cause: BaseException | None = err
    while cause is not None and seen < 10:
        if isinstance(cause, KeyboardInterrupt):
            return True
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return False


def main() -> None:
    """Entry point of the `namesae` console script: one clear line and exit code 2 on bad input, 130 on Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        app()
    except NamesaeError as err:
        typer.echo(f"namesae: error: {err}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo(INTERRUPTED, err=True)
        sys.exit(130)
    except SystemExit as err:
        if err.code in (1, 130) and _from_interrupt(err):
            typer.echo(INTERRUPTED, err=True)
            sys.exit(130)
        raise
