"""Running the typer app so that every usage error is one line on stderr and exit code 2.

Click, left to itself, prints a usage line, a hint and a framed box for a bad option; ours
print `qchem-events: ...`. An operator's script reads one form, so both become one line.
Arguments that are not UTF-8 (Python hands them over as lone surrogates) are refused before
any command sees them: a filter like that matches nothing and breaks whatever stores it.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import typer

try:  # recent typer vendors click privately; older typer uses click itself
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover
    # With click installed too (import-linter needs it) mypy sees two different classes.
    from click.exceptions import ClickException, UsageError  # type: ignore[no-redef,assignment]


def usage_exit(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"qchem-events: {message}", err=True)
    sys.exit(code)


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def _not_utf8(args: list[str]) -> str | None:
    for arg in args:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            return arg
    return None


def invoke(app: Any) -> NoReturn:
    """Run `app` on sys.argv and exit with its code; usage errors as one line, exit 2."""
    bad = _not_utf8(sys.argv[1:])
    if bad is not None:
        raw = bad.encode("utf-8", "surrogateescape")
        usage_exit(f"argument {raw[:80]!r} is not valid UTF-8")
    try:
        code = app(standalone_mode=False)
    except UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help is the message: show it all
            if exc.format_message().strip():
                typer.echo(exc.format_message(), err=True)
            sys.exit(exc.exit_code)
        where = (
            exc.ctx.command_path.removeprefix(exc.ctx.find_root().info_name or "")
            if exc.ctx
            else ""
        )
        prefix = f"{where.strip()}: " if where.strip() else ""
        usage_exit(f"{prefix}{_one_line(exc.format_message())} (see --help)")
    except ClickException as exc:
        usage_exit(_one_line(exc.format_message()), exc.exit_code)
    except typer.Abort:
        usage_exit("aborted", 1)
    sys.exit(code if isinstance(code, int) else 0)
