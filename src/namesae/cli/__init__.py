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


VERBOSITY = ("-v", "--verbose", "-q", "--quiet")


def _version(value: bool) -> None:
    if value:
        from namesae import __version__

        typer.echo(f"namesae {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages (also after the command)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Log warnings and errors only (also after the command)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the namesae version and exit."),
) -> None:
    """namesae: names -> prompts -> embeddings -> SAE -> features -> identity / groups / emergence -> steering.

    Progress bars are shown only when stderr is a terminal (pass --progress to force them)."""
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.getLogger("namesae").setLevel(level)


# Each name is a module `namesae.cli.<name>` defining a function of the same name; the CLI contract in DESIGN.md.
COMMANDS = (
    "embed", "generate", "synth", "train", "features", "identity", "groups",
    "emergence", "steer", "basis", "search", "icons", "report", "demo", "playground", "export",
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


def conventions(args: list[str], stderr_is_terminal: bool | None = None) -> list[str]:
    """The command line as typer reads it, after the house conventions.

    -v/--verbose and -q/--quiet are accepted anywhere before `--` (they are the root's options, moved in front),
    unless the command itself defines them; a command with --progress/--no-progress gets --no-progress when
    stderr is not a terminal (a log file or a pipe gets no bars) and neither was given.
    """
    end = args.index("--") if "--" in args else len(args)
    command = typer.main.get_command(app)
    at = None  # index of the (sub)command's name in args
    for i, token in enumerate(args[:end]):
        if not hasattr(command, "commands"):  # a leaf command (typer may vendor its own click: no isinstance)
            break
        if token in command.commands:
            command, at = command.commands[token], i
    if at is None:
        return list(args)
    own = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    moved = [i for i in range(at + 1, end) if args[i] in VERBOSITY and args[i] not in own]
    out = [args[i] for i in moved] + [t for i, t in enumerate(args) if i not in set(moved)]
    at += len(moved)
    if stderr_is_terminal is None:
        stderr_is_terminal = sys.stderr.isatty()
    given = set(out[at + 1:out.index("--") if "--" in out else len(out)])
    if not stderr_is_terminal and "--no-progress" in own and not given & {"--progress", "--no-progress"}:
        out.insert(at + 1, "--no-progress")
    return out


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `namesae` console script (and `python -m namesae`): one clear line and exit code 2 on
    bad input, 130 on Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        app(args=conventions(list(sys.argv[1:] if argv is None else argv)), prog_name="namesae")
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
