"""The ``leukemia-cnn`` command: a thin layer over the stage modules.

Every pipeline stage is one subcommand backed by one module of the same name whose
``run(cfg, root)`` does the stage's I/O; ``dvc.yaml`` calls these subcommands.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from leukemia_cnn import __version__
from leukemia_cnn.errors import LeukemiaCNNError

# subcommand -> (module, one-line help)
STAGES = {
    "validate-raw": ("leukemia_cnn.validate_raw",
                     "manifest of data/raw + Great Expectations checks (fails on bad data)"),
    "split": ("leukemia_cnn.split", "stratified, seeded 70/15/15 split table"),
    "validate-splits": ("leukemia_cnn.validate_splits",
                        "Great Expectations checks on the split table: sizes, class shares, "
                        "no image or near-duplicate in two splits"),
    "preprocess": ("leukemia_cnn.preprocess", "grayscale, resize, scale to [0,1]; arrays per split"),
    "features": ("leukemia_cnn.features", "HOG -> PCA (fit on train) + logged classical baseline"),
    "validate-features": ("leukemia_cnn.validate_features",
                          "Great Expectations checks on the features: shapes, finite values, "
                          "PCA components, explained variance"),
    "train": ("leukemia_cnn.train", "train the Keras CNN; one MLflow run with params and curves"),
    "evaluate": ("leukemia_cnn.evaluate",
                 "argmax accuracy, per-class P/R/F1, confusion matrix, prediction times"),
    "register": ("leukemia_cnn.register",
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
  mlflow ui --backend-store-uri sqlite:///mlflow.db
"""


def _add_params_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml",
                        help="composed config to run with (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leukemia-cnn",
        description="Reproducible leukemia (ALL) smear classifier: DVC stages, Hydra configs, "
                    "MLflow tracking and registry, Great Expectations data checks.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    params = sub.add_parser("params", help="compose conf/ (Hydra) and write params.yaml",
                            description="Compose conf/config.yaml with optional Hydra overrides "
                                        "and write the result to params.yaml, the file DVC "
                                        "stages read.")
    params.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. train.epochs=5")
    params.add_argument("--output", default="params.yaml", help="where to write (default: %(default)s)")
    params.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the file differs from the composed config")

    data = sub.add_parser("data", help="create or ingest the raw image tree")
    data_sub = data.add_subparsers(dest="data_command", metavar="SOURCE", required=True)
    synth = data_sub.add_parser(
        "synth", help="write the built-in synthetic dataset (Kaggle layout)",
        description="Generate synthetic 224x224 RGB smear-field JPEGs in data/raw/<Class>/ "
                    "(deterministic per seed), then `dvc add data/raw` so data.dvc versions them.")
    _add_params_arg(synth)
    synth.add_argument("--scale", type=float, default=None,
                       help="fraction of the real class counts 504/985/963/804 "
                            "(default: data.synth.scale)")
    synth.add_argument("--seed", type=int, default=None, help="default: data.synth.seed")
    synth.add_argument("--output", default=None, help="default: paths.raw_dir")
    synth.add_argument("--if-empty", action="store_true",
                       help="do nothing when the output folder already holds images")
    synth.add_argument("--no-dvc-add", action="store_true",
                       help="skip `dvc add` (e.g. outside a DVC repository)")
    get = data_sub.add_parser(
        "get", help="ingest a Kaggle zip, an image folder or the Kaggle API into data/raw",
        description="Copy the images of a source into data/raw/<Class>/ (original file names, "
                    "class folders matched case-insensitively to data.classes), check them with "
                    "the raw-data suite, swap the tree in (the previous data/raw stays intact on "
                    "any error), then `dvc add data/raw` so data.dvc versions exactly what was "
                    "ingested.")
    _add_params_arg(get)
    get.add_argument("--source", default=None,
                     help="the Kaggle zip as downloaded, a folder (Kaggle layout or "
                          "<Class>/<image>), `kaggle` (Kaggle API: needs the `kaggle` package "
                          "and credentials) or `synthetic` (default: data.source)")
    get.add_argument("--variant", choices=("Original", "Segmented"), default=None,
                     help="image set of the Kaggle archive (default: data.variant)")
    get.add_argument("--output", default=None, help="default: paths.raw_dir")
    get.add_argument("--no-validate", action="store_true",
                     help="swap the new tree in even if it fails the raw-data checks "
                          "(the validate_raw stage still stops the pipeline)")
    get.add_argument("--no-dvc-add", action="store_true",
                     help="skip `dvc add` (e.g. outside a DVC repository)")

    for name, (_, help_text) in STAGES.items():
        stage = sub.add_parser(name, help=help_text, description=f"Pipeline stage: {help_text}.")
        _add_params_arg(stage)

    promote = sub.add_parser(
        "promote", help="point the `champion` alias at the best version by validation accuracy",
        description="List the registered versions of the model with their validation accuracy "
                    "and move the alias to the best one (never chosen by test accuracy). "
                    "Idempotent.")
    _add_params_arg(promote)
    promote.add_argument("--dry-run", action="store_true", help="show the choice, move nothing")
    promote.add_argument("--by", choices=("run", "config"), default="run",
                         help="run: the best single run by validation accuracy; config: the "
                              "configuration with the best mean validation accuracy over its "
                              "seeds, then its best run (default: %(default)s)")

    # Parsed by Hydra, not argparse (see main); listed here for `leukemia-cnn --help`.
    sub.add_parser("sweep", add_help=False,
                   help="Hydra multirun of train+evaluate jobs (the Table 1 study); "
                        "`leukemia-cnn sweep --help` shows Hydra's options")

    report = sub.add_parser(
        "report", help="write reports/table1.md and .html: the sweeps over seeds beside the paper",
        description="Read the finished sweep runs from MLflow and write the Table 1 report: per "
                    "configuration mean +/- std and a t-interval over seeds of val/test accuracy "
                    "and prediction time beside the paper's numbers, a paired test per paper "
                    "claim, Fig. 3 (curves) and Fig. 2 (sample predictions).")
    _add_params_arg(report)
    report.add_argument("--sweep-id", action="append", default=None, metavar="ID",
                        help="only the runs of this sweep (repeatable; default: "
                             "report.sweep_ids, else every sweep run of the experiment)")
    report.add_argument("--name", default=None, metavar="NAME",
                        help="file stem of the report: writes reports/NAME.md, NAME.html and "
                             "NAME_files/ (default: report.name, i.e. table1), so a second "
                             "study does not overwrite the first")

    study = sub.add_parser(
        "study", help="the paper's study on a Kaggle-layout folder, in its own workspace "
                      "studies/NAME -> docs/results/NAME.md",
        description="Copy the project to studies/NAME (own data/, params.yaml, MLflow store), "
                    "ingest --source there, run the Table 1 and conv-layer rows over seeds on "
                    "the whole train split and write docs/results/NAME.md. The project's own "
                    "data and state are not touched.")
    study.add_argument("--source", required=True,
                       help="Kaggle-layout folder (<Class>/*.jpg) or the Kaggle zip")
    study.add_argument("--name", default="real", help="workspace and report name "
                       "(default: %(default)s)")
    study.add_argument("--experiments", default=None, metavar="A,B,...",
                       help="conf/experiment rows (default: the four Table 1 rows and conv2, "
                            "conv3, conv4)")
    study.add_argument("--seeds", default="1,2,3,4,5", help="default: %(default)s")
    study.add_argument("--jobs", type=int, default=2,
                       help="parallel training jobs (default: %(default)s)")
    study.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    study.add_argument("overrides", nargs="*",
                       help="extra Hydra overrides for every job, e.g. train.epochs=1")

    predict = sub.add_parser(
        "predict", help="classify image files with a registered model",
        description="Classify image files with an MLflow model (default: the champion). "
                    "Prints one row per image: path, predicted class, class probabilities.")
    _add_params_arg(predict)
    predict.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    predict.add_argument("--model-uri", default=None,
                         help="MLflow model URI (default: models:/<registered name>@champion)")
    predict.add_argument("--format", choices=("csv", "json"), default="csv")
    predict.add_argument("--output", default=None, help="write here instead of stdout")

    summary = sub.add_parser("summary", help="print the last run's metrics and where to look next")
    _add_params_arg(summary)
    return parser


def _run(args: argparse.Namespace) -> int:
    from leukemia_cnn.config import compose, find_repo_root, load_params, write_params

    root = find_repo_root()
    if args.command == "params":
        cfg = compose(args.overrides, root=root)
        from leukemia_cnn.config import validate_config

        validate_config(cfg)
        if args.check:
            from omegaconf import OmegaConf

            current = OmegaConf.load(args.output) if Path(args.output).is_file() else None
            if current is None or OmegaConf.to_container(current) != OmegaConf.to_container(cfg):
                print(f"{args.output} differs from conf/ composed with {args.overrides or 'defaults'}; "
                      "run `leukemia-cnn params` to rewrite it", file=sys.stderr)
                return 1
            print(f"{args.output} matches conf/")
            return 0
        print(f"wrote {write_params(cfg, args.output)}")
        return 0

    if args.command == "study":
        from leukemia_cnn import study

        experiments = (args.experiments.split(",") if args.experiments
                       else study.STUDY_EXPERIMENTS)
        seeds = [int(seed) for seed in args.seeds.split(",")]
        study.main(root, args.source, args.name, experiments, seeds, args.jobs,
                   tuple(args.overrides), dry_run=args.dry_run)
        return 0
    cfg = load_params(args.params)
    if args.command == "data" and args.data_command == "get":
        from leukemia_cnn import ingest

        ingest.main(cfg, root, source=args.source, variant=args.variant, output=args.output,
                    validate=not args.no_validate, dvc_add=not args.no_dvc_add)
        return 0
    if args.command == "data":
        from leukemia_cnn import synth

        synth.main(cfg, root, scale=args.scale, seed=args.seed, output=args.output,
                   if_empty=args.if_empty, dvc_add=not args.no_dvc_add)
        return 0
    if args.command in STAGES:
        module = importlib.import_module(STAGES[args.command][0])
        result = module.run(cfg, root)
        if result:
            print(json.dumps(result, indent=2, default=str))
        return 0
    if args.command == "promote":
        from leukemia_cnn import register

        if register.promote(cfg, root, dry_run=args.dry_run, by=args.by) is None:
            raise LeukemiaCNNError("nothing to promote: no version is eligible (see the list "
                                   "above); train a configuration that does not collapse")
        return 0
    if args.command == "report":
        from leukemia_cnn import report

        if args.sweep_id:
            cfg.report.sweep_ids = list(args.sweep_id)
        if args.name is not None:
            cfg.report.name = args.name
        report.main(cfg, root)
        return 0
    if args.command == "predict":
        from leukemia_cnn import predict

        predict.main(cfg, root, args.images, model_uri=args.model_uri, fmt=args.format,
                     output=args.output)
        return 0
    if args.command == "summary":
        from leukemia_cnn import summary

        summary.main(cfg, root)
        return 0
    raise AssertionError(f"unhandled command {args.command}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``leukemia-cnn``; user errors print one message and exit 1."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sweep"]:
        # Hydra owns the sweep's command line (overrides, -m, hydra/launcher=..., --help).
        from leukemia_cnn import sweep

        return sweep.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except LeukemiaCNNError as exc:
        print(f"leukemia-cnn {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"leukemia-cnn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
