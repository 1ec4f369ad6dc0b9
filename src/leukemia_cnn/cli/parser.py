"""The command line of ``leukemia-cnn``: its subcommands, options, help and usage errors.

Each subcommand names its handler in ``cli.commands`` (:func:`_command`).
"""

from __future__ import annotations

import argparse
from functools import partial

from leukemia_cnn import __version__
from leukemia_cnn.cli import commands
from leukemia_cnn.errors import EXIT_UNFAMILIAR, EXIT_USAGE

# subcommand -> (module, one-line help)
STAGES = {
    "validate-raw": ("leukemia_cnn.quality.validate_raw",
                     "manifest of data/raw + Great Expectations checks (fails on bad data)"),
    "split": ("leukemia_cnn.data.split", "stratified, seeded 70/15/15 split table"),
    "validate-splits": ("leukemia_cnn.quality.validate_splits",
                        "Great Expectations checks on the split table: sizes, class shares, "
                        "no image or near-duplicate in two splits"),
    "preprocess": ("leukemia_cnn.data.preprocess", "grayscale, resize, scale to [0,1]; arrays per split"),
    "features": ("leukemia_cnn.features.features", "HOG -> PCA (fit on train) + logged classical baseline"),
    "validate-features": ("leukemia_cnn.quality.validate_features",
                          "Great Expectations checks on the features: shapes, finite values, "
                          "PCA components, explained variance"),
    "train": ("leukemia_cnn.modeling.train", "train the Keras CNN; one MLflow run with params and curves"),
    "evaluate": ("leukemia_cnn.modeling.evaluate",
                 "argmax accuracy, per-class P/R/F1, confusion matrix, prediction times"),
    "robustness": ("leukemia_cnn.modeling.robustness",
                   "the test split under seeded acquisition shifts: accuracy, share flagged, "
                   "accuracy on accepted images, wrong answers accepted"),
    "register": ("leukemia_cnn.registry.register",
                 "register the run's model in the MLflow registry and update the champion"),
}

EPILOG = """\
typical use:
  leukemia-cnn data synth            write the built-in synthetic dataset to data/raw
  leukemia-cnn data get --source leukemia.zip   ingest the Kaggle archive instead
  dvc repro                          run every stage (each calls one subcommand below)
  leukemia-cnn promote               point alias `champion` at the best validation accuracy
  leukemia-cnn sweep -m 'experiment=glob(table1_*)' seed=1,2,3   the Table 1 study (Hydra)
  leukemia-cnn report                reports/table1.md: the study over seeds beside the paper
  leukemia-cnn promote --by config   champion from the configuration with the best mean val acc
  leukemia-cnn predict a.jpg b.jpg   classify images with models:/leukemia-cnn@champion
  leukemia-cnn explain a.jpg         a.jpg's Grad-CAM heatmap -> reports/explain/a_gradcam.png
  leukemia-cnn card                  the champion's model card (Markdown)
  leukemia-cnn drift --source DIR    do the images in DIR look like the training images?
  mlflow ui --backend-store-uri sqlite:///mlflow.db

outputs: a command writes only its own outputs. An --output (relative: to the current
folder), report --name or paths.* value that is outside or is the project root, holds or is
a file git or DVC tracks, is an input, or is an existing folder or file the command did not
record as its own (or that was edited since) is refused before anything is written.

exit status:
  0    done
  1    bad input: a config value, a data file, a refused output path, a missing model, ...
       (one line saying what, where and how to fix it); `predict` also exits 1 when it
       skipped an unreadable image (its row is marked in column `error`)
  2    usage: an unknown command or option, a missing argument
  3    internal error: a bug; the message names the exception (report it;
       LEUKEMIA_CNN_TRACEBACK=1 shows the traceback)
  4    unlike the training images: `predict --reject-unfamiliar` flagged at least one image
       (those rows have no class; column `in_distribution` false), or `drift` found drift
       (its report says why)
  5    `drift` found no drift in fewer images than drift.min_images: too few to judge
  130  interrupted (Ctrl-C); outputs are written atomically, earlier ones stay intact
"""

class ArgumentParser(argparse.ArgumentParser):
    """argparse with a two-line usage error (what was wrong, where to look), exit 2."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\nhint: `{self.prog} --help` lists "
                              "the arguments\n")


def _non_empty(value: str) -> str:
    """argparse type: a value that is not empty (an empty one would silently mean the default)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty; leave the option out for the default")
    return value


def _positive(value: str) -> int:
    """argparse type: a whole number of at least 1."""
    if not value.strip().isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number >= 1")
    return int(value)


def _seed_list(value: str) -> list[int]:
    """argparse type of ``study --seeds``: comma-separated whole numbers, e.g. 1,2,3."""
    try:
        seeds = [int(seed) for seed in value.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a comma-separated list of whole "
                                         "numbers (e.g. 1,2,3)") from None
    if any(seed < 0 for seed in seeds):
        raise argparse.ArgumentTypeError(f"{value!r}: seeds are whole numbers >= 0")
    return seeds


def _command(sub, name: str, func, params: bool = True, **kwargs) -> argparse.ArgumentParser:
    """Subcommand ``name`` (``kwargs``: help, description, ...) run by the handler ``func``;
    ``params``: it reads ``--params``."""
    command = sub.add_parser(name, **kwargs)
    if params:
        command.add_argument("--params", default="params.yaml",
                             help="composed config to run with (default: %(default)s)")
    command.set_defaults(func=func)
    return command


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="leukemia-cnn",
        description="Reproducible leukemia (ALL) smear classifier: DVC stages, Hydra configs, "
                    "MLflow tracking and registry, Great Expectations data checks.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--verbose", action="store_true",
                        help="show the libraries' start-up logs and warnings too "
                             "(TensorFlow, absl, MLflow); same as LEUKEMIA_CNN_VERBOSE=1")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_config_commands(sub)
    _add_data_commands(sub)
    _add_stage_commands(sub)
    _add_study_commands(sub)
    _add_model_commands(sub)
    _command(sub, "summary", partial(commands.run_stage, "leukemia_cnn.cli.summary"),
             help="print the last run's metrics and where to look next")
    return parser


def _add_config_commands(sub) -> None:
    """``params`` and ``check-config``."""
    params = _command(sub, "params", commands.run_params, params=False,
                      help="compose conf/ (Hydra) and write params.yaml",
                      description="Compose conf/config.yaml with optional Hydra overrides and "
                                  "write the result to params.yaml, the file DVC stages read.")
    params.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. train.epochs=5")
    params.add_argument("--output", default="params.yaml", type=_non_empty,
                        help="where to write (default: %(default)s)")
    params.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the file differs from the composed config")
    _command(
        sub, "check-config", commands.run_check_config,
        help="check params.yaml against the config schema (DVC's first stage)",
        description="Pipeline stage: check every knob of params.yaml (unknown keys, types, "
                    "ranges) and write reports/config_check.json, on which every other stage "
                    "depends, so DVC stops at a refused knob before removing any output.")


def _add_data_commands(sub) -> None:
    """``data synth``, ``data get`` and ``data push``."""
    data = sub.add_parser("data", help="create or ingest the raw image tree")
    data_sub = data.add_subparsers(dest="data_command", metavar="SOURCE", required=True)
    synth = _command(
        data_sub, "synth", commands.run_data_synth,
        help="write the built-in synthetic dataset (Kaggle layout)",
        description="Generate synthetic 224x224 RGB smear-field JPEGs in data/raw/<Class>/ "
                    "(deterministic per seed), then `dvc add data/raw` so data.dvc versions them.")
    synth.add_argument("--scale", type=float, default=None,
                       help="fraction of the real class counts 504/985/963/804 "
                            "(default: data.synth.scale)")
    synth.add_argument("--seed", type=int, default=None, help="default: data.synth.seed")
    synth.add_argument("--output", default=None, type=_non_empty,
                       help="relative: to the current folder (default: paths.raw_dir)")
    synth.add_argument("--if-empty", action="store_true",
                       help="do nothing when the output folder already holds images")
    get = _command(
        data_sub, "get", commands.run_data_get,
        help="ingest a Kaggle zip, an image folder or the Kaggle API into data/raw",
        description="Copy the images of a source into data/raw/<Class>/ (original file names, "
                    "class folders matched case-insensitively to data.classes), check them with "
                    "the raw-data suite, swap the tree in (the previous data/raw stays intact on "
                    "any error), then `dvc add data/raw` so data.dvc versions exactly what was "
                    "ingested.")
    get.add_argument("--source", default=None, type=_non_empty,
                     help="the Kaggle zip as downloaded, a folder (Kaggle layout or "
                          "<Class>/<image>), `kaggle` (Kaggle API: needs the `kaggle` package "
                          "and credentials) or `synthetic` (default: data.source)")
    get.add_argument("--variant", choices=("Original", "Segmented"), default=None,
                     help="image set of the Kaggle archive (default: data.variant)")
    get.add_argument("--output", default=None, type=_non_empty,
                     help="relative: to the current folder (default: paths.raw_dir)")
    get.add_argument("--no-validate", action="store_true",
                     help="swap the new tree in even if it fails the raw-data checks "
                          "(the validate_raw stage still stops the pipeline)")
    for command in (synth, get):
        command.add_argument("--no-dvc-add", action="store_true",
                             help="skip `dvc add` (e.g. outside a DVC repository)")
        command.add_argument(
            "--discard-local-changes", action="store_true",
            help="replace the output folder even though it holds files no recorded version "
                 "has (added or edited by hand since the last `dvc add`); they are moved to "
                 "<folder>.local-<time>/ first. Without it such files are named and refused")
    push = _command(
        data_sub, "push", commands.run_data_push, params=False,
        help="`dvc push`, after checking the remote (S3: the server, the keys)",
        description="List the DVC remote's bucket once, saying in one line what is wrong (the "
                    "S3 server down, a refused key and the setting to fix), then `dvc push`.")
    push.add_argument("--remote", default=None, help="DVC remote name (default: the default)")


def _add_stage_commands(sub) -> None:
    """The pipeline stages (dvc.yaml), ``promote`` and ``sweep``."""
    for name, (module, help_text) in STAGES.items():
        _command(sub, name, partial(commands.run_stage, module), help=help_text,
                 description=f"Pipeline stage: {help_text}.")

    promote = _command(
        sub, "promote", commands.run_promote,
        help="point the `champion` alias at the best version by validation accuracy",
        description="List the registered versions of the model, grouped by the validation set "
                    "they were scored on, and move the alias to the best one scored on the "
                    "workspace's current data (val accuracies on other data are not compared; "
                    "never chosen by test accuracy). Idempotent.")
    promote.add_argument("--dry-run", action="store_true", help="show the choice, move nothing")
    promote.add_argument("--by", choices=("run", "config"), default="run",
                         help="run: the best single run by validation accuracy; config: the "
                              "configuration with the best mean validation accuracy over its "
                              "seeds, then its best run (default: %(default)s)")
    promote.add_argument("--data", default="current", type=_non_empty,
                         metavar="current|VERSION|all",
                         help="which versions are compared: those scored on the workspace's "
                              "current validation set (default), on the data version (data.dvc "
                              "md5) or validation digest VERSION (a prefix is enough), or `all`: "
                              "list every validation set with its best version and move nothing")

    # Parsed by Hydra, not argparse (see main); listed here for `leukemia-cnn --help`.
    sub.add_parser("sweep", add_help=False,
                   help="Hydra multirun of train+evaluate jobs (the Table 1 study); "
                        "`leukemia-cnn sweep --help` shows Hydra's options")


def _add_study_commands(sub) -> None:
    """``report`` and ``study``."""
    report = _command(
        sub, "report", commands.run_report,
        help="write reports/table1.md and .html: the sweeps over seeds beside the paper",
        description="Read the finished sweep runs from MLflow and write the Table 1 report: per "
                    "configuration mean +/- std and a t-interval over seeds of val/test accuracy "
                    "and prediction time beside the paper's numbers, a paired test per paper "
                    "claim, Fig. 3 (curves) and Fig. 2 (sample predictions).")
    report.add_argument("--sweep-id", action="append", default=None, metavar="ID",
                        help="only the runs of this sweep (repeatable; default: "
                             "report.sweep_ids, else every sweep run of the experiment)")
    report.add_argument("--name", default=None, metavar="NAME",
                        help="file stem of the report: writes reports/NAME.md, NAME.html and "
                             "NAME_files/ (default: report.name, i.e. table1), so a second "
                             "study does not overwrite the first")
    report.add_argument("--no-sample-images", action="store_true",
                        help="leave out Fig. 2 (test images of the data with their "
                             "predictions): a report to publish where the images may not be "
                             "shared (report.sample_images=false)")

    study = _command(
        sub, "study", commands.run_study, params=False,
        help="the paper's study on a Kaggle-layout folder, in its own workspace "
             "studies/NAME -> docs/results/NAME.md",
        description="Copy the project to studies/NAME (own data/, params.yaml, MLflow store), "
                    "ingest --source there, run the Table 1 and conv-layer rows and the fast "
                    "recipe over seeds on the whole train split and write "
                    "docs/results/NAME.md. The project's own data and state are not touched.")
    study.add_argument("--source", required=True, type=_non_empty,
                       help="Kaggle-layout folder (<Class>/*.jpg) or the Kaggle zip")
    study.add_argument("--name", default="real", help="workspace and report name "
                       "(default: %(default)s)")
    study.add_argument("--experiments", default=None, metavar="A,B,...",
                       help="conf/experiment rows (default: the four Table 1 rows, conv2, "
                            "conv3, conv4 and fast)")
    study.add_argument("--seeds", default="1,2,3,4,5", type=_seed_list, help="default: 1,2,3,4,5")
    study.add_argument("--jobs", type=int, default=2,
                       help="parallel training jobs (default: %(default)s)")
    study.add_argument("--no-sample-images", action="store_true",
                       help="a report without Fig. 2 (images of the source with their "
                            "predictions), e.g. for images you may not publish")
    study.add_argument("--overwrite-report", action="store_true",
                       help="re-publish over docs/results/NAME.* although git tracks them or "
                            "they were not written by an earlier study (a committed report)")
    study.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    study.add_argument("overrides", nargs="*",
                       help="extra Hydra overrides for every job, e.g. train.epochs=1")


def _add_model_commands(sub) -> None:
    """``predict``, ``explain``, ``card`` and ``drift`` (monitoring/drift.py)."""
    predict = _command(
        sub, "predict", commands.run_predict, help="classify image files with a registered model",
        description="Classify image files with an MLflow model (default: the champion). "
                    "Prints one row per image: path, predicted class, class probabilities.")
    predict.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    predict.add_argument("--model-uri", default=None, type=_non_empty,
                         help="MLflow model URI (default: models:/<registered name>@champion)")
    predict.add_argument("--format", choices=("csv", "json"), default="csv")
    predict.add_argument("--output", default=None, type=_non_empty,
                         help="write here instead of stdout (relative: to the current folder)")
    predict.add_argument("--reject-unfamiliar", action="store_true",
                         help="no class for images the guard flags as unlike the training "
                              f"images; exit {EXIT_UNFAMILIAR} when there is one")

    explain = _command(
        sub, "explain", commands.run_explain,
        help="Grad-CAM heatmaps: where in each image the model saw its class",
        description="Classify image files with an MLflow model (default: the champion) and "
                    "write, per image, <stem>_gradcam.png: the original image with a heatmap of "
                    "the evidence for the predicted class (HiResCAM, the Grad-CAM variant for "
                    "the CNN's flatten head, on its last conv layer), at the image's resolution.")
    explain.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    explain.add_argument("--model", default=None, metavar="URI", type=_non_empty,
                         help="MLflow model URI (default: models:/<registered name>@champion)")
    explain.add_argument("--output", default=None, type=_non_empty, metavar="DIR",
                         help="folder for the heatmaps (default: <reports_dir>/explain)")

    card = _command(
        sub, "card", commands.run_card,
        help="print the model card of a registered version (default: the champion)",
        description="Print a Markdown model card generated from what MLflow holds for the "
                    "version: data source and version, split sizes, per-class precision/recall/"
                    "F1 on val and test, calibration, configuration, training time, known limits.")
    card.add_argument("version", nargs="?", default=None,
                      help="version number (default: the version with the champion alias)")

    drift = _command(
        sub, "drift", commands.run_drift,
        help="compare a folder of new images with the training images; exit 4 on drift",
        description="Per-feature shift tests (KS, corrected for many tests) of size, colour, "
                    "stain, focus and HOG + PCA features against the training data, and the share "
                    "of images the model's guard flags; a Markdown and HTML report, logged to "
                    "MLflow. Exit status 0: no drift, 4: drift, 5: too few images to judge "
                    "(fewer than drift.min_images and no drift found).")
    drift.add_argument("--source", required=True, metavar="DIR",
                       help="folder of new images: <Class>/<image> (Kaggle layout) or flat")
    drift.add_argument("--model-uri", default=None,
                       help="model whose guard is asked (default: models:/<name>@champion)")
    drift.add_argument("--no-guard", action="store_true",
                       help="ask no model: the verdict rests on the shift tests alone")
    drift.add_argument("--output", default=None, type=_non_empty, metavar="FILE.md",
                       help="the Markdown report, HTML beside it (default: "
                            "<reports_dir>/drift/<folder name>.md); - prints the Markdown")
    drift.add_argument("--max-files", default=None, type=_positive, metavar="N",
                       help="refuse a source holding more than N files (default: "
                            "drift.max_files)")
