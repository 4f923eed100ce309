"""``clora`` console entry point."""

from __future__ import annotations

import functools
import logging
import os
import sys

import click
from click.exceptions import NoArgsIsHelpError

from clora.errors import CloraError, as_storage_error


class EchoHandler(logging.Handler):
    """Shows clora's log lines on the current stderr (warnings prefixed)."""

    def emit(self, record):
        prefix = "warning: " if record.levelno >= logging.WARNING else ""
        click.echo(prefix + record.getMessage(), err=True)


def flag_of(command: click.Command, field: str | None) -> str | None:
    """The flag that sets ``field`` (``data_dir`` -> ``--data-dir``) in ``command`` or its subcommands.

    An option's name means the same setting in every clora command, so the first match is the one.
    """
    if field is None:
        return None
    for param in command.params:
        if param.name == field and isinstance(param, click.Option):
            return max(param.opts, key=len)
    for sub in getattr(command, "commands", {}).values():
        flag = flag_of(sub, field)
        if flag:
            return flag
    return None


COMMAND_KEY = "clora.command"


def remember_command(command: click.Command) -> None:
    """Make ``command`` (and every command below it) record itself when it runs, so that an error's flag is
    looked up in the command that ran: ``clora predict`` has no ``--model`` to point at."""
    for sub in getattr(command, "commands", {}).values():
        remember_command(sub)
    callback = command.callback
    if callback is None or getattr(callback, "_clora_remembers", False):
        return

    @functools.wraps(callback)
    def remembering(*args, **kwargs):
        click.get_current_context().meta[COMMAND_KEY] = command  # meta is shared by nested contexts
        return callback(*args, **kwargs)

    remembering._clora_remembers = True
    command.callback = remembering


class CloraGroup(click.Group):
    """Turns a CloraError from any command into one 'Error: ...' line and exit code 1.

    clora's messages speak of values; where an error names the setting at fault
    (``CloraError.field``) the line ends with the flag that sets it.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CloraError as exc:
            flag = flag_of(ctx.meta.get(COMMAND_KEY, self), exc.field)
            message = str(exc) if flag is None or flag in str(exc) else f"{exc} ({flag})"
            raise click.ClickException(message) from None
        except NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise OneLineUsageError(exc) from None
        except BrokenPipeError:  # the reader went away (``clora library show LIB | head``): stop without a word
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so that the interpreter's last flush finds no closed pipe
            sys.exit(1)
        except Exception as exc:  # a full or read-only disk: one line, as any other environment problem
            storage = as_storage_error(exc)
            if storage is None:
                raise
            raise click.ClickException(str(storage)) from None

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise OneLineUsageError(exc) from None


class OneLineUsageError(click.ClickException):
    """A usage error as one 'Error: ...' line that says where help is, exit code 2 as click's own."""

    exit_code = 2

    def __init__(self, exc: click.UsageError):
        where = exc.ctx.command_path if exc.ctx is not None else "clora"
        super().__init__(f"{exc.format_message().rstrip('.')} (see '{where} --help')")


@click.group(cls=CloraGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="clora")
def cli():
    """clora: continual-learning LoRA adapters for Hugging Face transformers models.

    Train one adapter per task of a stream, each kept exactly orthogonal to what earlier
    tasks use, and measure forgetting across the sequence.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    log = logging.getLogger("clora")
    if not any(isinstance(h, EchoHandler) for h in log.handlers):
        log.addHandler(EchoHandler())
    log.setLevel(logging.INFO)
    log.propagate = False


from clora.cli.compare import compare  # noqa: E402  (commands attach to the group defined above)
from clora.cli.add_task import add_task  # noqa: E402
from clora.cli.inbox import inbox  # noqa: E402
from clora.cli.library import library  # noqa: E402
from clora.cli.predict import predict, serve  # noqa: E402
from clora.cli.run import run  # noqa: E402

cli.add_command(run)
cli.add_command(compare)
cli.add_command(add_task)
cli.add_command(library)
cli.add_command(predict)
cli.add_command(serve)
cli.add_command(inbox)
remember_command(cli)


def main() -> None:
    cli(prog_name="clora")


if __name__ == "__main__":
    sys.exit(main())
