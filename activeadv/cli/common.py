"""Options and output helpers shared by the command families."""

from __future__ import annotations

import json
from typing import Any

import click

quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Random seed (deterministic runs).")
device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    envvar="ACTIVEADV_DEVICE",
    help="torch device: auto (CUDA when present, else CPU), cpu, cuda, cuda:1 ...",
)
db_option = click.option(
    "--db",
    "database_url",
    envvar="ACTIVEADV_DATABASE_URL",
    default=None,
    help="SQLAlchemy database URL [env ACTIVEADV_DATABASE_URL; default sqlite:///activeadv.db].",
)


def echo_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, sort_keys=True, default=str))


def parse_csv_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]
