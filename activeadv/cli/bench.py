"""``activeadv bench``: what scoring and a round cost, measured against a baseline in the same run."""

from __future__ import annotations

from typing import Any

import click

from activeadv.cli.common import (
    COUNT,
    device_option,
    echo_json,
    executor_options,
    json_option,
    parse_csv_list,
    pop_train_values,
    quiet_option,
    seed_option,
    train_options,
)

threads_option = click.option("--threads", type=COUNT, default=None,
                              help="torch CPU threads (default: torch's own choice, usually the core count).")
dataset_option = click.option("--dataset", default="digits", show_default=True,
                              help="digits, idx:DIR, npz:FILE or folder:DIR (needs labels: the bench trains).")


def _err(line: str) -> None:
    click.echo(line, err=True)


def _fmt(value: object, spec: str) -> str:
    return "-" if value is None else format(value, spec)


@click.group("bench")
def bench() -> None:
    """Measure scoring throughput, round latency and memory (see docs/benchmarks.md)."""


@bench.command("scoring")
@dataset_option
@click.option("--pool", "pool_size", type=COUNT, default=10_000, show_default=True, help="Items ranked.")
@click.option("--labels", type=COUNT, default=1_000, show_default=True,
              help="Labeled items the model is trained on first (a realistic decision boundary).")
@click.option("--train-steps", type=COUNT, default=300, show_default=True, help="Optimizer steps for that model.")
@click.option("--repeats", type=COUNT, default=3, show_default=True, help="Timed runs per method (after a warm-up).")
@click.option("--batch-size", type=COUNT, default=512, show_default=True, help="Batch for forward passes.")
@click.option("--attack-batch-size", type=COUNT, default=512, show_default=True, help="Batch for DeepFool/FGSM.")
@click.option("--slice-rows", type=COUNT, default=None,
              help="Rows per network pass within a batch (default: 64 on CPU, the whole batch on GPU).")
@click.option("--top", "top_fraction", type=float, default=0.01, show_default=True,
              help="n of the top-n overlap with exact DeepFool, as a fraction of the pool.")
@click.option("--third-party", type=click.IntRange(0, 2**31 - 1), default=200, show_default=True,
              help="Images given to torchattacks/ART DeepFool when installed (0: skip).")
@click.option("--methods", default=None, help="Comma-separated subset of the methods (default: all).")
@threads_option
@device_option
@seed_option
@json_option
@quiet_option
def scoring(dataset: str, pool_size: int, labels: int, train_steps: int, repeats: int, batch_size: int,
            attack_batch_size: int, slice_rows: int | None, top_fraction: float, third_party: int, methods: str | None,
            threads: int | None, device: str, seed: int, as_json: bool, quiet: bool) -> None:
    """Images/s of every scoring method on one model and pool, with ratios and top-n overlap.

    Forward-only and forward+backward (the unit) rates, each strategy, DFAL's
    exact and fast modes and their shortcuts, and torchattacks/ART DeepFool
    when installed: medians of --repeats runs after a warm-up, each paired
    with a forward+backward probe so the ratios hold on a loaded machine.

    Example: activeadv bench scoring --dataset idx:../shared/data/mnist --pool 10000 --json
    """
    from activeadv.app.experiments import bench_scoring

    result = bench_scoring(
        dataset=dataset, pool=pool_size, labels=labels, repeats=repeats, batch_size=batch_size,
        attack_batch_size=attack_batch_size, slice_rows=slice_rows, top_fraction=top_fraction, third_party=third_party,
        methods=tuple(parse_csv_list(methods)) if methods else None, threads=threads, device=device, seed=seed,
        train_steps=train_steps, progress=not quiet, report=None if quiet else _err)
    if as_json:
        echo_json(result)
        return
    m = result["machine"]
    click.echo(f"{m['cpu']} ({m['cpu_count']} cores), torch {m['torch']}, {m['torch_threads']} threads, "
               f"device {m['device']}{' ' + m['gpu'] if 'gpu' in m else ''}")
    click.echo(f"model {result['model']['parameters']:,} params, {result['model']['labels']} labels, test acc "
               f"{_fmt(result['model'].get('test_accuracy'), '.3f')}; pool {result['pool']}, "
               f"top-n n={result['top_n']}, medians of {repeats}")
    click.echo(f"{'method':<22} {'img/s':>9} {'spread':>17} {'x unit':>7} {'overlap':>7} {'rho':>6} "
               f"{'x torchatk':>10} {'x ART':>7}")
    for row in result["rows"]:
        lo, hi = row["spread"]
        click.echo(f"{row['method']:<22} {row['images_per_s']:9.1f} {lo:8.1f}-{hi:<8.1f} {row['ratio_to_unit']:7.3f} "
                   f"{_fmt(row.get('top_n_overlap'), '7.2f'):>7} {_fmt(row.get('rank_correlation'), '6.3f'):>6} "
                   f"{_fmt(row.get('x_torchattacks'), '10.1f'):>10} {_fmt(row.get('x_art'), '7.1f'):>7}")
    for method, why in result["skipped"].items():
        click.echo(f"{method}: skipped, {why}")


@bench.command("round")
@dataset_option
@click.option("--strategy", default="dfal", show_default=True, help="Strategy that scores the pool each round.")
@click.option("--pool", "pool_size", type=COUNT, default=None, help="Candidates per round (default: the whole pool).")
@click.option("--initial", type=COUNT, default=100, show_default=True, help="Random labels before round 0.")
@click.option("--query", type=COUNT, default=40, show_default=True, help="Items selected per round.")
@click.option("--rounds", type=COUNT, default=3, show_default=True)
@train_options
@threads_option
@device_option
@seed_option
@json_option
@quiet_option
def round_(dataset: str, strategy: str, pool_size: int | None, initial: int, query: int, rounds: int,
           threads: int | None, device: str, seed: int, as_json: bool, quiet: bool, **train_kwargs) -> None:
    """Round latency by phase (train / evaluate / score / select) on a simulated project.

    Engine only: no database and no Label Studio; the simulated annotators
    answer from the dataset's labels at once.

    Example: activeadv bench round --dataset idx:../shared/data/mnist --pool 10000 --rounds 3
    """
    from activeadv.app.experiments import bench_round

    result = bench_round(dataset=dataset, strategy=strategy, pool=pool_size, initial=initial, query=query,
                         rounds=rounds, train=pop_train_values(train_kwargs), threads=threads, device=device,
                         seed=seed, progress=not quiet, report=None if quiet else _err)
    if as_json:
        echo_json(result)
        return
    click.echo(f"{result['strategy']}, {rounds} rounds, {result['store']}")
    click.echo(f"{'phase':<9} {'median s':>9} {'min':>8} {'max':>8}")
    for phase, s in result["phases"].items():
        click.echo(f"{phase:<9} {s['median']:9.2f} {s['min']:8.2f} {s['max']:8.2f}")


@bench.command("rank")
@dataset_option
@click.option("--strategy", default="dfal", show_default=True)
@click.option("--exact", is_flag=True, help="dfal: exact DeepFool on every item instead of the fast shortlist.")
@click.option("--labels", type=COUNT, default=200, show_default=True, help="Labels the model is trained on first.")
@click.option("--train-steps", type=COUNT, default=100, show_default=True)
@click.option("--batch-size", type=COUNT, default=256, show_default=True)
@click.option("--limit", type=COUNT, default=None, help="Rank only the first N candidates.")
@click.option("--slice-rows", type=COUNT, default=None,
              help="Rows per network pass within a batch (default: 64 on CPU, the whole batch on GPU).")
@threads_option
@device_option
@executor_options
@seed_option
@json_option
@quiet_option
def rank(dataset: str, strategy: str, exact: bool, labels: int, train_steps: int, batch_size: int,
         limit: int | None, slice_rows: int | None, threads: int | None, device: str, execution: Any, seed: int,
         as_json: bool, quiet: bool) -> None:
    """Rank a whole pool streamed from its source; report images/s and peak RSS vs the pool as one tensor.

    Example: /usr/bin/time -v activeadv bench rank --dataset folder:/tmp/mnist200k --json
    """
    from activeadv.app.experiments import bench_rank

    result = bench_rank(dataset, strategy, exact=exact, train_steps=train_steps, labels=labels,
                        batch_size=batch_size, limit=limit, threads=threads, device=device, seed=seed,
                        progress=not quiet, report=None if quiet else _err, slice_rows=slice_rows,
                        execution=execution)
    if as_json:
        echo_json(result)
        return
    mib = 1024 * 1024
    click.echo(f"{result['ranked']:,} items ranked by {result['strategy']} in {result['rank_s']:.1f}s "
               f"({result['images_per_s']:.0f} img/s, executor {result['executor']}); scan {result['scan_s']:.1f}s, "
               f"train {result['train_s']:.1f}s; selected ids sha1 {result['selected_sha1'][:12]}")
    click.echo(f"peak RSS {result['peak_rss_bytes'] / mib:.0f} MiB; the pool as one float32 tensor "
               f"{result['pool_as_one_float32_tensor_bytes'] / mib:.0f} MiB")


def register(cli: click.Group) -> None:
    cli.add_command(bench)
