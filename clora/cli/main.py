"""``clora`` console entry point."""

from __future__ import annotations

import logging
import os
import sys

import click

from clora.errors import CloraError


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


class CloraGroup(click.Group):
    """Turns a CloraError from any command into one 'Error: ...' line and exit code 1.

    clora's messages speak of values; where an error names the setting at fault
    (``CloraError.field``) the line ends with the flag that sets it.
    """

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CloraError as exc:
            flag = flag_of(self, exc.field)
            message = str(exc) if flag is None or flag in str(exc) else f"{exc} ({flag})"
            raise click.ClickException(message) from None


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
from clora.cli.library import library  # noqa: E402
from clora.cli.predict import predict, serve  # noqa: E402
from clora.cli.run import run  # noqa: E402

cli.add_command(run)
cli.add_command(compare)
cli.add_command(add_task)
cli.add_command(library)
cli.add_command(predict)
cli.add_command(serve)


def main() -> None:
    cli(prog_name="clora")


if __name__ == "__main__":
    sys.exit(main())
