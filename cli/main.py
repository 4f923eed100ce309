"""``clora`` console entry point."""

from __future__ import annotations

import logging
import os
import sys

import click

from clora.errors import CloraError


class CloraGroup(click.Group):
    """Turns a CloraError from any command into one 'Error: ...' line and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CloraError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=CloraGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="clora")
def cli():
    """clora: continual-learning LoRA adapters for Hugging Face transformers models.

    Train one adapter per task of a stream, each kept exactly orthogonal to what earlier
    tasks use, and measure forgetting across the sequence.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")


from clora.cli.run import run  # noqa: E402  (commands attach to the group defined above)

cli.add_command(run)


def main() -> None:
    cli(prog_name="clora")


if __name__ == "__main__":
    sys.exit(main())
