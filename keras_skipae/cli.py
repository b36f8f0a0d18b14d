"""The `skipae` command: a thin shell over the library's functions.

Each sub-command calls the same function a user would call from Python. Errors
reach the user as one line plus a hint; ``--debug`` shows the traceback and
TensorFlow's start-up logging, which is otherwise quiet (see
:mod:`keras_skipae.tf_startup`). Nothing here imports TensorFlow: the commands
import what they need when they run.
"""

from __future__ import annotations

import sys
from typing import get_args

import click

from .arch import parse_corruption
from .choices import POOLINGS, PRECISIONS, STRATEGIES, TuneAlgorithm, TuneObjective
from .data_cli import data_group
from .runs import METRICS_FILE
from .tf_startup import prefer_onednn, quiet_tensorflow_startup


class SkipAECommand(click.Group):
    """A click group that turns library errors into one clear line."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except Exception as exc:  # noqa: BLE001 - the CLI's single error boundary
            if ctx.obj and ctx.obj.get("debug"):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            click.echo(f"error: {first}", err=True)
            rest = str(exc).strip().splitlines()[1:]
            for line in rest[:40]:
                click.echo(f"  {line}", err=True)
            click.echo("hint: run with --debug for the full traceback, or --help for usage", err=True)
            sys.exit(1)


@click.group(cls=SkipAECommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True,
              help="Show full tracebacks instead of one-line errors, and TensorFlow's start-up logging.")
@click.version_option(package_name="keras_skipae")
@click.pass_context
def main(ctx, debug):
    """Pre-train skip auto-encoders and carry their encoders into classifiers and segmenters.

    \b
    Start here:
      skipae presets              list the architectures
      skipae quickstart           pre-train + fine-tune on Fashion-MNIST (minutes on a CPU)
      skipae run RECIPE           run a recipe from recipes/
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    prefer_onednn()  # before any command imports TensorFlow; a TF_ENABLE_ONEDNN_OPTS of the user's wins
    if not debug:  # a TF_CPP_MIN_LOG_LEVEL of the user's wins
        quiet_tensorflow_startup()


@main.command()
def presets():
    """List the named architectures with a one-line description each."""
    from .presets import presets as list_presets

    click.echo(str(list_presets()))


# ---------------------------------------------------------------- trainer engineer's commands
# run, pretrain, finetune, evaluate, quickstart: thin shells over keras_skipae.recipes

_SET_HELP = "Override a recipe key: --set STAGE.KEY=VALUE or --set SECTION.KEY=VALUE (repeatable)."


def _recipe_options(fn):
    fn = click.option("--mixed-precision", type=click.Choice(PRECISIONS),
                      default=None, help="Override trainer.mixed_precision.")(fn)
    fn = click.option("--strategy", type=click.Choice(STRATEGIES),
                      default=None, help="Override trainer.strategy (multi_worker reads TF_CONFIG).")(fn)
    fn = click.option("--run-dir", type=click.Path(file_okay=False), default=None,
                      help="Where to write the run (default: runs/RECIPE_NAME). Re-running resumes.")(fn)
    fn = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)(fn)
    return fn


def _run_recipe(recipe, overrides, run_dir, strategy, mixed_precision, only=None, kind=None):
    from . import recipes

    return recipes.run(recipe, overrides=list(overrides), run_dir=run_dir, strategy=strategy,
                       mixed_precision=mixed_precision, only=only, kind=kind, echo=click.echo)


@main.command("run", short_help="Run every stage of a recipe (pretrain, finetune, evaluate).")
@click.argument("recipe")
@_recipe_options
@click.option("--stage", "stages", multiple=True, help="Run only these stages (repeatable).")
@click.option("--seeds", default=None, metavar="SEEDS",
              help="Run the whole recipe once per seed (0-4, or 0,3,7) into RUN_DIR/seed_S/, then compare them.")
def run_cmd(recipe, overrides, run_dir, strategy, mixed_precision, stages, seeds):
    """Run every stage of RECIPE (a .yaml path or a name in recipes/).

    \b
    Examples:
      skipae run quickstart
      skipae run quickstart --seeds 0-4 --run-dir runs/quickstart_seeds
      skipae run recipes/cifar10_cpu.yaml --set pretrain.epochs=2 --run-dir runs/try
      TF_CONFIG=... skipae run cifar10 --strategy multi_worker
    The run directory gets recipe.yaml, environment.json, metrics.json and one
    folder per stage (model.keras, checkpoints/, history.csv, logs/ for TensorBoard).
    """
    from . import recipes

    loaded = recipes.load_recipe(recipe, list(overrides))
    if seeds is not None or loaded.seeds:
        if stages:
            raise click.UsageError("--stage and --seeds do not mix: seeded runs run every stage")
        recipes.run_seeds(loaded, recipes.parse_seeds(seeds) if seeds is not None else None, run_dir=run_dir,
                          strategy=strategy, mixed_precision=mixed_precision, echo=click.echo)
        return
    recipes.run(loaded, run_dir=run_dir, strategy=strategy, mixed_precision=mixed_precision,
                only=list(stages) or None, echo=click.echo)


@main.command(short_help="Compare finished runs of one recipe over seeds (intervals, paired differences).")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--pair", "pairs", multiple=True, metavar="FIRST:SECOND",
              help="Stages to compare seed by seed (default: every pair of the recipe's summary stages).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Where comparison.{json,csv,md,png} go (default: the first RUN, or its parent for seed_S runs).")
def compare(runs, pairs, out):
    """Compare RUNS: run directories of one recipe with different seeds, or a folder of seed_S/ runs.

    \b
    Examples:
      skipae compare runs/quickstart_seeds
      skipae compare runs/a runs/b runs/c --pair finetune:scratch
    """
    from pathlib import Path

    from .compare import compare_runs

    parsed = []
    for text in pairs:
        first, sep, second = text.partition(":")
        if not sep or not first or not second:
            raise click.BadParameter(f"{text!r}: expected FIRST:SECOND, e.g. finetune:scratch", param_hint="--pair")
        parsed.append((first, second))
    report = compare_runs(list(runs), pairs=parsed or None)
    first = Path(runs[0])
    target = Path(out) if out else (first if not (first / METRICS_FILE).exists() else first.parent)
    paths = report.write(target)
    click.echo(report.markdown())
    click.echo(f"written to {paths['md'].parent}")


@main.command(short_help="Run only a recipe's pretrain stage(s).")
@click.argument("recipe")
@_recipe_options
def pretrain(recipe, overrides, run_dir, strategy, mixed_precision):
    """Run only RECIPE's pretrain stage(s): the auto-encoder on unlabelled images."""
    _run_recipe(recipe, overrides, run_dir, strategy, mixed_precision, kind="pretrain")


@main.command(short_help="Run only a recipe's finetune stage(s).")
@click.argument("recipe")
@_recipe_options
@click.option("--stage", "stages", multiple=True, help="Only these finetune stages (default: all of them).")
def finetune(recipe, overrides, run_dir, strategy, mixed_precision, stages):
    """Run only RECIPE's finetune stage(s); their pretrain stage must be in --run-dir already."""
    _run_recipe(recipe, overrides, run_dir, strategy, mixed_precision, only=list(stages) or None, kind="finetune")


@main.command(short_help="Evaluate a saved model or a run's stage on a data split.")
@click.argument("target", type=click.Path(exists=True))
@click.option("--data", "source", default=None, help="Data source, e.g. idx: or folder:PATH (default: the run's).")
@click.option("--split", default=None, help="Split to evaluate on (default: the run's eval_split).")
@click.option("--stage", default=None, help="Which stage of a run directory (default: the last).")
@click.option("--batch-size", default=None, type=click.IntRange(min=1),
              help="Default: the stage's own batch size for a run directory, 256 for a model file.")
def evaluate(target, source, split, stage, batch_size):
    """Evaluate TARGET (a .keras model or a run directory) and print its metrics.

    \b
    Examples:
      skipae evaluate runs/quickstart --stage scratch
      skipae evaluate model.keras --data idx: --split test
    """
    from . import recipes

    metrics = recipes.evaluate_model(target, source, split, stage=stage, batch_size=batch_size)
    for key, value in metrics.items():
        click.echo(f"{key:16s} {value:.4f}")


@main.command("recipes", short_help="List the shipped recipes (skipae run NAME runs one).")
def recipes_cmd():
    """List the recipes that ship with the package, each with what it is for.

    Run one by name (skipae run NAME) or copy it as a start: its file is printed by --path.
    """
    from .recipe_library import RECIPES_DIR, shipped_recipes  # no TensorFlow: listing takes a fraction of a second

    shipped = shipped_recipes()
    if not shipped:
        raise click.ClickException(f"no recipes in {RECIPES_DIR}: the package's recipe library is missing; "
                                   "reinstall keras_skipae")
    width = max(map(len, shipped))
    for name, what in shipped.items():
        click.echo(f"{name.ljust(width)}  {what}")
    click.echo(f"({len(shipped)} recipes in {RECIPES_DIR})")


@main.command(short_help="Fashion-MNIST: pre-trained vs scratch with 100 labels/class.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@click.option("--run-dir", type=click.Path(file_okay=False), default="runs/quickstart", show_default=True)
def quickstart(overrides, run_dir):
    """Fashion-MNIST: pre-train, fine-tune with 100 labels/class, compare with scratch over seeds.

    Runs the shipped quickstart recipe (skipae recipes lists them all) once
    per seed of its ``seeds:`` and ends with the comparison: each arm's mean
    test accuracy with its 95% interval, the paired difference and the verdict.
    Needs Debian's dataset-fashion-mnist (make quickstart installs it).
    """
    from . import recipes

    loaded = recipes.load_recipe(str(recipes.quickstart_recipe()), list(overrides))
    if loaded.seeds:
        recipes.run_seeds(loaded, None, run_dir=run_dir, echo=click.echo)
    else:
        recipes.run(loaded, run_dir=run_dir, echo=click.echo)


# ---------------------------------------------------------------- end of trainer engineer's commands


# ---------------------------------------------------------------- export engineer's commands
# export: a thin shell over keras_skipae.export.export_model


@main.command("export")
@click.argument("source", type=click.Path(exists=True))
@click.option("--format", "formats", default="savedmodel,onnx", show_default=True,
              help="Comma-separated: savedmodel (TF Serving layout), onnx (tf2onnx), litert (.tflite).")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Writes OUT/savedmodel/NAME/VERSION/, OUT/onnx/NAME/VERSION/model.onnx, OUT/litert/NAME/VERSION/model.tflite.")
@click.option("--stage", default=None, help="Which stage of a run directory (default: the last in metrics.json).")
@click.option("--name", default=None, help="Served model name (default: the model's kind).")
@click.option("--version", type=click.IntRange(min=1), default=None, help="Version number (default: the next free one).")
@click.option("--opset", type=click.IntRange(min=9), default=17, show_default=True, help="ONNX opset.")
@click.option("--samples", type=click.Path(exists=True), default=None,
              help="Real uint8 images for the parity check: a .npy/.npz or a folder of image files (8, evenly "
                   "spaced).")
@click.option("--overwrite", is_flag=True, help="Replace an existing version.")
@click.option("--quantize", type=click.Choice(["int8", "dynamic_int8"]), default=None,
              help="LiteRT: int8 weights and activations, calibrated on --calibration (else --samples), or "
                   "dynamic_int8 (weights only, slower); reports the accuracy change instead of parity.")
@click.option("--calibration", type=click.Path(exists=True), default=None,
              help="With --quantize int8: images of your data to set the activation ranges (.npy/.npz or a folder; "
                   "256 of them, evenly spaced); default: --samples, read the same way.")
@click.option("--input-size", type=(click.IntRange(min=1), click.IntRange(min=1)), default=None,
              metavar="H W", help="LiteRT: the fixed height and width of a segmenter that takes any size.")
def export_cmd(source, formats, out, stage, name, version, opset, samples, overwrite, quantize, calibration,
               input_size):
    """Export SOURCE (a .keras model or a run directory) for serving, verified.

    \b
    Examples:
      skipae export runs/quickstart --out exported
      skipae export runs/cifar10 --stage pretrain --format onnx --out exported
      skipae export runs/cifar10 --format litert --out exported
      skipae export runs/cifar10 --format litert --quantize int8 --calibration train/ --out exported
      skipae export model.keras --format savedmodel --out models --name cifar10 --samples images/
    Every export is loaded back and compared with the Keras model; a mismatch
    fails the export with the figures and writes nothing.
    """
    from . import export as exporter

    sample_images = exporter.load_sample_images(samples) if samples else None
    if calibration and quantize != "int8":
        raise click.UsageError("--calibration is for --quantize int8")
    calibration_path = calibration or (samples if quantize == "int8" else None)
    calibration_images = (exporter.load_sample_images(calibration_path, limit=exporter.CALIBRATION_LIMIT)
                          if calibration_path else None)
    if quantize == "int8" and not calibration:
        click.echo("int8 calibrated on --samples: the accuracy change below is measured on images the calibration "
                   "saw; give --calibration (other images of your data) for a fair figure")
    results = exporter.export_model(
        source, out, [f.strip() for f in formats.split(",") if f.strip()], stage=stage, name=name,
        version=version, opset=opset, overwrite=overwrite, sample_images=sample_images,
        input_size=input_size, quantize=quantize, calibration_images=calibration_images,
    )
    for result in results:
        click.echo(str(result))
        click.echo(result.summary())
        click.echo(f"report: {result.report_path}")


# ---------------------------------------------------------------- end of export engineer's commands


# ---------------------------------------------------------------- analysis engineer's commands
# probe, study, tune: thin shells over keras_skipae.probe, keras_skipae.recipes.study, keras_skipae.tune


@main.command("probe", short_help="Reconstruction vs feature quality of every checkpoint.")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--data", "source", default=None, help="Data source (default: the first run's recipe.yaml data.source).")
@click.option("--labelled-split", default=None, help="Split the probe's labelled subset comes from (default: train).")
@click.option("--heldout-split", default=None, help="Split that scores everything (default: the recipe's eval_split, else test).")
@click.option("--labels-per-class", type=click.IntRange(min=1), default=None, help="Labelled images per class (default 100).")
@click.option("--max-heldout", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder (default: RUN/probe).")
@click.option("--pooling", type=click.Choice(POOLINGS), default="avg", show_default=True)
@click.option("--knn-k", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--corruption", default="masking:0.25", show_default=True,
              help="Held-out corruption for the *_corrupted metrics: KIND:LEVEL or none.")
@click.option("--finetune-epochs", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also fine-tune a classifier from each encoder for this many epochs.")
@click.option("--n-boot", type=click.IntRange(min=0), default=1000, show_default=True, help="Bootstrap resamples.")
@click.option("--no-baselines", is_flag=True, help="Skip the raw-pixel and untrained-encoder baselines.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--stages", is_flag=True, help="Also probe every encoder stage's features (probe_accuracy_stageS).")
@click.option("--grid", type=click.IntRange(min=1), default=1, show_default=True,
              help="With N > 1, also pool each stage over an NxN grid of cells (probe_accuracy_stageS_gridN).")
def probe_cmd(runs, source, labelled_split, heldout_split, labels_per_class, max_heldout, out, pooling, knn_k,
              corruption, finetune_epochs, n_boot, no_baselines, seed, stages, grid):
    """Reconstruction vs feature quality for every checkpoint of RUNS.

    RUNS are run directories (every auto-encoder stage's checkpoints/epoch_EEE.keras,
    saved with checkpoint_every), .keras files, or both. Writes probe.csv,
    probe_correlations.csv, probe.json, recon_vs_probe.png, over_epochs.png and
    TensorBoard scalars (logs/), and prints the table and a plain-language verdict.

    \b
    Examples:
      skipae probe runs/quickstart --labels-per-class 100
      skipae probe runs/a runs/b --data idx: --out runs/compare
      skipae probe runs/quickstart --stages --grid 2     # which encoder stages pre-training changed
    """
    from pathlib import Path

    from . import probe
    from .runs import RunDir

    defaults = RunDir(runs[0]).data_defaults() if Path(runs[0]).is_dir() else {}
    source = source or defaults.get("source")
    if source is None:
        raise click.UsageError("no recipe.yaml in the run to take the data from; give --data SOURCE (e.g. --data idx:)")
    labelled, heldout = probe.probe_data(
        source,
        labelled_split=labelled_split or defaults.get("train_split", "train"),
        heldout_split=heldout_split or defaults.get("eval_split", "test"),
        labels_per_class=labels_per_class or defaults.get("labels_per_class") or 100,
        max_heldout=max_heldout,
        seed=seed,
    )
    out = out or (Path(runs[0]) / "probe" if Path(runs[0]).is_dir() else Path("probe"))
    table = probe.probe_run(list(runs), labelled, heldout, out_dir=out, pooling=pooling, knn_k=knn_k,
                            corruption=parse_corruption(corruption), baselines=not no_baselines,
                            finetune_epochs=finetune_epochs, n_boot=n_boot, seed=seed, verbose=True,
                            stages=stages, grid=grid)
    click.echo(str(table))
    click.echo(f"written to {out}")


@main.command("embed", short_help="Write an encoder's features of a data source (.npz, .npy, .parquet).")
@click.argument("target")
@click.argument("source")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="FILE.npz, FILE.npy or FILE.parquet.")
@click.option("--split", default="train", show_default=True)
@click.option("--stage", "run_stage", default=None, help="Which stage of a run directory (default: the last).")
@click.option("--encoder-stage", type=click.IntRange(min=1), default=None,
              help="Features of this encoder stage (1 = the first) instead of the encoder's output.")
@click.option("--pooling", type=click.Choice(["avg", "max", "avgmax", "none"]), default="avg", show_default=True,
              help="none: the stage's feature maps as they are (with --encoder-stage).")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
def embed_cmd(target, source, out, split, run_stage, encoder_stage, pooling, batch_size):
    """Write TARGET's encoder features of SOURCE to --out, with ids and labels, for a head of your own.

    TARGET is a .keras model or a run directory; SOURCE any data source.

    \b
    Examples:
      skipae embed runs/quickstart/seed_0 idx: --split test --out test_features.npz
      skipae embed model.keras folder:photos --encoder-stage 2 --pooling none --out maps.npy
    """
    from .embed import embed

    result = embed(target, source, out=out, split=split, stage=encoder_stage, pooling=pooling,
                   batch_size=batch_size, run_stage=run_stage)
    click.echo(f"{result.examples} examples x {result.feature_shape} features of {result.model} -> {result.path}")


@main.command("study", short_help="Pre-train a grid of auto-encoders, probe every checkpoint.")
@click.argument("recipe")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe key: --set SECTION.KEY=VALUE, e.g. --set train.epochs=4 (repeatable).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder (default: runs/NAME).")
@click.option("--quick", is_flag=True, help="Apply the recipe's quick: overrides (a smoke run in a minute or two).")
@click.option("--skip-training", is_flag=True, help="Only probe the runs already in --out.")
def study_cmd(recipe, overrides, out, quick, skip_training):
    """Run a probe study: pre-train a grid of auto-encoders, probe every checkpoint.

    \b
    Example:
      skipae study recipes/pitfall_fashion_mnist.yaml --out runs/pitfall
    Writes OUT/RUN/ (one trainer run per grid point), OUT/probe/ and OUT/study.md.
    """
    from .recipes import load_study, run_study

    config = load_study(recipe, list(overrides), quick=quick)
    run_study(config, out or f"runs/{config.name}{'_quick' if quick else ''}", quick=quick,
              skip_training=skip_training)


@main.command("tune", short_help="Hyper-parameter search scored by a linear probe.")
@click.argument("recipe")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe key: --set SECTION.KEY=VALUE, e.g. --set space.stages=[2] (repeatable).")
@click.option("--run-dir", type=click.Path(file_okay=False), default=None, help="Where results go (default: runs/NAME).")
@click.option("--algorithm", type=click.Choice(get_args(TuneAlgorithm)), default=None,
              help="Override tuner.algorithm.")
@click.option("--objective", type=click.Choice(get_args(TuneObjective)), default=None,
              help="Override tuner.objective (both are recorded for every trial either way).")
@click.option("--max-trials", type=click.IntRange(min=1), default=None, help="Override tuner.max_trials.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override tuner.epochs.")
@click.option("--strategy", type=click.Choice(STRATEGIES), default=None,
              help="Override tuner.strategy: the tf.distribute strategy every trial trains under.")
@click.option("--quick", is_flag=True, help="Apply the recipe's quick: overrides (a smoke run).")
@click.option("--overwrite", is_flag=True, help="Start the search afresh instead of resuming it.")
def tune_cmd(recipe, overrides, run_dir, algorithm, objective, max_trials, epochs, strategy, quick, overwrite):
    """Search a skip auto-encoder's hyper-parameters with keras-tuner, scored by a linear probe.

    \b
    Examples:
      skipae tune recipes/tune_fashion_mnist.yaml --run-dir runs/tune
      skipae tune recipes/tune_fashion_mnist.yaml --algorithm hyperband --objective val_reconstruction_loss
    Several machines: run the same command on each, sharing --run-dir, with
      KERASTUNER_ORACLE_IP=CHIEF_IP KERASTUNER_ORACLE_PORT=8000 and
      KERASTUNER_TUNER_ID=chief on the chief, tuner0, tuner1, ... on the workers.
    """
    from . import tune

    settings = {k: v for k, v in {"algorithm": algorithm, "objective": objective, "max_trials": max_trials,
                                  "epochs": epochs, "strategy": strategy}.items() if v is not None}
    config = tune.load_tune_config(recipe, [*overrides, *(f"tuner.{k}={v}" for k, v in settings.items())],
                                   quick=quick)
    result = tune.search(config, run_dir or f"runs/{config.name}", overwrite=overwrite)
    if result is None:
        click.echo(f"worker {tune.worker_id()}: trials done; the chief writes the summary")
    else:
        click.echo(result.summary())
        click.echo(f"written to {run_dir or f'runs/{config.name}'}")


# ---------------------------------------------------------------- end of analysis engineer's commands


# ---------------------------------------------------------------- data engineer's commands (data_cli.py)
main.add_command(data_group)
# ---------------------------------------------------------------- end of data engineer's commands


if __name__ == "__main__":  # pragma: no cover
    main()
