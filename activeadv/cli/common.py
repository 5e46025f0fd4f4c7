"""Options and output helpers shared by the command families."""

from __future__ import annotations

import functools
import json
from typing import Any

import click

quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON on stdout.")
# counts and sizes: positive and small enough for every database's INTEGER
COUNT = click.IntRange(1, 2**31 - 1)
seed_option = click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
                           help="Random seed (deterministic runs).")
random_until_option = click.option(
    "--random-until", type=click.IntRange(0, 2**31 - 1), default=None, metavar="N", envvar="ACTIVEADV_RANDOM_UNTIL",
    show_envvar=True,
    help="Cold start: rounds pick at random while fewer than N labels are held, then the strategy (a model of a "
         "few dozen labels puts its boundary in the wrong places; docs/results.md).  Default: the first round "
         "after the seed round is random (simulate: initial + query size; round/run: unless 10 labels a class are "
         "held); 0: the strategy from the first round.")
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
subsample_option = click.option(
    "--subsample", "--candidates", "subsample", type=COUNT, default=None,
    help="Score only this many random unlabeled items per round (large pools) [default: every item]; "
         "--candidates is the old name.")


def executor_options(func):
    """Where the heavy steps run: here, or on a Ray cluster (the `ray` extra).  The command gets one
    ``execution`` argument (``activeadv.app.Execution``) instead of the four options."""
    @functools.wraps(func)
    def with_execution(*args: Any, executor: str, ray_address: str | None, ray_workers: int, train_workers: int,
                       **kwargs: Any) -> Any:
        from activeadv.app import Execution
        from activeadv.errors import ConfigError

        try:
            execution = Execution(executor=executor, ray_address=ray_address, ray_workers=ray_workers,
                                  train_workers=train_workers)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
        return func(*args, execution=execution, **kwargs)

    options = [
        click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="Score the pool (and train, with --train-workers) in this process, or on a Ray "
                          "cluster (pip install 'activeadv[ray]')."),
        click.option("--ray-address", envvar="RAY_ADDRESS", default=None,
                     help="Ray cluster to use with --executor ray [env RAY_ADDRESS; default: a local cluster "
                          "started on demand]."),
        click.option("--ray-workers", type=COUNT, default=1, show_default=True,
                     help="Scoring actors with --executor ray (one GPU each when the cluster has GPUs)."),
        click.option("--train-workers", type=click.IntRange(0, 4096), default=0, show_default=True,
                     help="With --executor ray: train data-parallel in this many Ray Train processes "
                          "(DistributedDataParallel; a GPU each when the cluster has enough) [0: in this "
                          "process]."),
    ]
    for option in reversed(options):
        with_execution = option(with_execution)
    return with_execution


def stop_options(func):
    """The stopping rule's settings (``stopping.StabilizingPredictions``): simulate and run."""
    options = [
        click.option("--stop-window", type=COUNT, default=3, show_default=True,
                     help="Stopping rule: how many consecutive rounds' prediction agreements are averaged."),
        click.option("--stop-threshold", type=float, default=0.99, show_default=True,
                     help="Stopping rule: the mean Cohen's kappa between consecutive rounds' predictions on a "
                          "fixed stop set that counts as stable."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def echo_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, sort_keys=True, default=str))


def parse_csv_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _floats(ctx: click.Context, param: click.Parameter, value: str | tuple | None) -> tuple[float, ...] | None:
    """``0.05,0.1`` -> ``(0.05, 0.1)`` (None stays None)."""
    if value is None or isinstance(value, tuple):
        return value
    try:
        return tuple(float(part) for part in parse_csv_list(value))
    except ValueError:
        raise click.BadParameter(f"comma-separated numbers expected, got '{value}'") from None


def _names(ctx: click.Context, param: click.Parameter, value: str | tuple | None) -> tuple[str, ...] | None:
    if value is None or isinstance(value, tuple):
        return value
    names = tuple(parse_csv_list(value))
    return EVAL_ATTACKS if names == ("all",) else names


# robustness.ATTACKS (checked by a test: the CLI does not import torch-level modules)
EVAL_ATTACKS = ("fgsm", "bim", "pgd", "pgd_l2", "ll", "fgsm_true", "fgsm_pred", "transfer")
EVAL_FIELDS = ("eval_eps", "eval_attacks", "eval_subset", "eval_steps", "eval_l2_eps", "eval_surrogates")
EVAL_SUBSET = 0  # training.EVAL_SUBSET (checked by a test): off by default (its cost: docs/robustness.md)


def eval_options(func):
    """The robustness suite's settings (TrainConfig's ``eval_*``): every command that trains, and `robustness`."""
    options = [
        click.option("--eval-eps", callback=_floats, default="0.05,0.1,0.2,0.3", show_default=True,
                     help="Robustness suite: the L-inf eps sweep, comma-separated (images in [0, 1]; "
                          "feature vectors in standard deviations)."),
        click.option("--eval-attacks", callback=_names, default="all", show_default=True,
                     help="Robustness suite: comma-separated attacks of " + ", ".join(EVAL_ATTACKS)
                          + " (fgsm_true = fgsm from the true label, fgsm_pred from the predicted one: label "
                            "leaking; transfer: from earlier rounds' models); all: every one."),
        click.option("--eval-subset", type=click.IntRange(0, 2**31 - 1), default=EVAL_SUBSET, show_default=True,
                     help="Robustness suite: test items attacked after each round's training (the same ids every "
                          "round), e.g. 500; 0: off (the default: on digits the suite costs more than training; "
                          "`activeadv robustness` attacks 1000 unless told)."),
        click.option("--eval-steps", type=COUNT, default=10, show_default=True,
                     help="Robustness suite: iterations of bim, pgd, pgd_l2, ll and transferred PGD."),
        click.option("--eval-l2-eps", callback=_floats, default=None,
                     help="Robustness suite: L2 radii of pgd_l2, one per --eval-eps [default: 0.238 x eps x "
                          "sqrt(input size): 2.0 at eps 0.3 on 28x28 images, Madry et al.'s MNIST pair]."),
        click.option("--eval-surrogates", type=click.IntRange(0, 1000), default=1, show_default=True,
                     help="Robustness suite: the last K earlier rounds' models whose adversarial examples are "
                          "transferred to this round's model (black box); 0: no transfer."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


# the TrainConfig fields that ``train_options`` sets (same names)
TRAIN_FIELDS = ("adv", "epsilon", "alpha", "adv_steps", "adv_target", "adv_ensemble", "epochs", "min_steps",
                "batch_size", "lr", "lr_schedule", "ema", "unlabeled", "unlabeled_weight", "unlabeled_rampup",
                "unlabeled_min_steps", "unlabeled_batch_size", "vat_epsilon", "vat_xi", "entmin", "augment",
                "balance", "warm_start", "warm_fraction", *EVAL_FIELDS)


def train_options(func):
    """The training options shared by every command that trains (simulate, round, bench)."""
    options = [
        click.option("--adv", type=click.Choice(["none", "fgsm", "bim", "pgd", "ll"]), default="fgsm",
                     show_default=True,
                     help="Adversarial regularization; 'll' is the iterative least-likely class attack; 'none' is "
                          "the plain-training ablation."),
        click.option("--epsilon", type=float, default=0.1, show_default=True,
                     help="L-inf radius of the training perturbation (images are in [0, 1]; feature vectors "
                          "in standard deviations of each feature)."),
        click.option("--alpha", type=float, default=0.5, show_default=True,
                     help="Weight of the clean loss: alpha*CE(x) + (1-alpha)*CE(x_adv)."),
        click.option("--adv-steps", type=COUNT, default=5, show_default=True, help="Iterations for bim/pgd/ll."),
        click.option("--adv-target", type=click.Choice(["predicted", "true"]), default="predicted",
                     show_default=True,
                     help="Craft x_adv from the predicted label (no label leaking) or the true one."),
        click.option("--adv-ensemble", type=click.IntRange(0, 1000), default=0, show_default=True,
                     help="Ensemble adversarial training: alternate each batch's adversarial examples between the "
                          "model's own and FGSM ones from K static models (the last K earlier rounds' frozen "
                          "checkpoints; before any exists, K independently trained plain surrogates); 0: off."),
        click.option("--epochs", type=COUNT, default=50, show_default=True,
                     help="Passes over the labeled set (at least --min-steps updates)."),
        click.option("--min-steps", type=click.IntRange(0, 2**31 - 1), default=300, show_default=True,
                     help="Fewest optimizer steps."),
        click.option("--batch-size", type=COUNT, default=64, show_default=True),
        click.option("--lr", type=float, default=1e-3, show_default=True),
        click.option("--lr-schedule", type=click.Choice(["constant", "cosine"]), default="constant",
                     show_default=True,
                     help="cosine: the learning rate decays to 0 over each training run's steps."),
        click.option("--ema", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.99, show_default=True,
                     help="Each training returns the exponential moving average of its weights with this decay "
                          "(steadier models on few labels); 0: the last step's weights."),
        click.option("--unlabeled", type=click.Choice(["none", "vat", "pseudo-fgsm"]), default="none",
                     show_default=True,
                     help="Learn from the unlabeled pool too: virtual adversarial training (KL to the most "
                          "sensitive direction) or FGSM on confident predictions."),
        click.option("--unlabeled-weight", type=float, default=1.0, show_default=True,
                     help="Weight of the unlabeled term."),
        click.option("--unlabeled-rampup", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
                     help="The unlabeled term's weight rises (exp(-5(1-t)^2)) over this share of each run's steps; "
                          "0: full weight from the first step."),
        click.option("--unlabeled-steps", "unlabeled_min_steps", type=click.IntRange(0, 2**31 - 1), default=500,
                     show_default=True, help="Fewest optimizer steps when --unlabeled is on."),
        click.option("--unlabeled-batch-size", type=COUNT, default=64, show_default=True,
                     help="Unlabeled items per step (drawn at random from the pool, loaded per step)."),
        click.option("--vat-eps", "vat_epsilon", type=float, default=None,
                     help="VAT: L2 radius of the virtual adversarial perturbation [default: 0.071 x sqrt(input "
                          "size), 2.0 on 28x28 images]."),
        click.option("--vat-xi", type=float, default=1e-6, show_default=True,
                     help="VAT: finite-difference step of the power iteration."),
        click.option("--entmin/--no-entmin", default=False, show_default=True,
                     help="VAT: also minimise the prediction entropy on unlabeled items (VAT+EntMin)."),
        click.option("--augment/--no-augment", default=True, show_default=True,
                     help="Random shifts of labeled images by up to 1/14 of the side, rounded down (none on "
                          "images under 14 px, never on feature vectors)."),
        click.option("--balance/--no-balance", default=False, show_default=True,
                     help="Draw labeled batches class-balanced (each class equally often) instead of shuffling "
                          "the labeled set: actively chosen labels are skewed toward the confused classes."),
        click.option("--warm-start/--no-warm-start", default=False, show_default=True,
                     help="Continue from the previous round's model (--warm-fraction of the steps) instead "
                          "of training from scratch."),
        click.option("--warm-fraction", type=float, default=0.5, show_default=True,
                     help="Share of the steps a warm-started round runs."),
        eval_options,
    ]
    for option in reversed(options):
        func = option(func)
    return func


def pop_train_values(kwargs: dict) -> dict:
    """Pop the ``train_options`` values out of a command's kwargs (TrainConfig field names)."""
    return {n: kwargs.pop(n) for n in TRAIN_FIELDS}
