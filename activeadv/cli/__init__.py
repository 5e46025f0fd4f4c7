"""The ``activeadv`` command line: thin click adapters over the library.

Each sub-module registers one family of commands; domain errors
(``ActiveAdvError``) become one-line ``click`` errors here and nowhere else.
"""

from __future__ import annotations

import logging

import click

from activeadv import __version__
from activeadv.errors import ActiveAdvError


class _Group(click.Group):
    """A group that turns library errors into one-line messages (exit 1), never tracebacks."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ActiveAdvError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="activeadv")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """activeadv: active learning with adversarial-margin selection.

    Train with FGSM adversarial regularization, rank the unlabeled pool by how
    small a perturbation flips the model (DeepFool), send the closest items to
    annotators, learn from their labels.
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for chatty in ("httpcore", "httpx", "hpack"):  # their debug lines carry request headers (the API token)
        logging.getLogger(chatty).setLevel(max(level, logging.INFO))


def _register() -> None:
    # Imported here so that each family lives in its own module (they import this one's ``cli``).
    from activeadv.cli import bench, labelstudio, project, robustness, serve, simulate

    for module in (simulate, project, robustness, labelstudio, bench, serve):
        module.register(cli)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="activeadv")
