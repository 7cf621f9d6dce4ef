"""The typer application every command registers on, its consoles, and the error boundary.

Every command turns a KitsrtError into a one-line message on stderr and its documented exit code
(see ``kitsrt.errors.EXIT_CODES``); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools

import typer
from rich.console import Console
from rich.markup import escape

from kitsrt.errors import EXIT_CODES, InputError, KitsrtError

EXIT_CODE_HELP = "Exit codes: " + "; ".join(f"{code} {text.split(':')[0]}" for code, text in EXIT_CODES.items())

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="kitsrt: deploy kidney and kidney-tumor CT segmentation. " + EXIT_CODE_HELP)
import_app = typer.Typer(no_args_is_help=True, help="Turn models trained elsewhere into kitsrt packages.")
serve_app = typer.Typer(no_args_is_help=True, help="Run kitsrt as a network service.")
app.add_typer(import_app, name="import")
app.add_typer(serve_app, name="serve")
err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def one_line(text: str) -> str:
    return " ".join(text.split())


def say(text: str) -> None:
    """A plain progress or result line on stderr (markup in ``text`` is printed literally)."""
    err.print(escape(text), soft_wrap=True)


def user_errors(command):
    """Run a command; a KitsrtError becomes 'error: ...' on stderr and its exit code."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from kitsrt.io.files import install_signal_cleanup

        install_signal_cleanup()
        try:
            return command(*args, **kwargs)
        except KitsrtError as exc:
            err.print(f"[bold red]error:[/] {escape(one_line(str(exc)))}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:  # the machine refused: permissions, disk full, a folder where a file was meant
            where = f"{exc.filename}: " if exc.filename else ""
            err.print(f"[bold red]error:[/] {escape(one_line(where + (exc.strerror or str(exc))))}", soft_wrap=True)
            raise typer.Exit(InputError.exit_code) from None

    return wrapper


def main(args: list[str] | None = None) -> None:
    """The console entry point: ``app``, with typer's usage errors (an option out of its range, a
    missing argument) printed as one ``error:`` line with exit code 2 like every other user error."""
    try:
        code = app(args=args, standalone_mode=False)
    except typer.Abort:
        raise SystemExit(130) from None
    except typer.TyperException as exc:  # typer's (vendored click) usage errors
        if type(exc).__name__ == "NoArgsIsHelpError" or not hasattr(exc, "format_message"):
            exc.show()
        else:
            err.print(f"[bold red]error:[/] {escape(one_line(exc.format_message()))}", soft_wrap=True)
        raise SystemExit(getattr(exc, "exit_code", 2)) from None
    raise SystemExit(code if isinstance(code, int) else 0)
