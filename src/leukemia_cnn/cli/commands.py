"""One handler per ``leukemia-cnn`` command: ``handler(args, root) -> exit status``.

``cli.parser`` binds each to its subcommand with ``set_defaults(func=...)``; each hands its
arguments to the module that does the work.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
import sys
import tempfile
from pathlib import Path

from leukemia_cnn.errors import EXIT_BAD_INPUT, EXIT_UNFAMILIAR, ConfigError, LeukemiaCNNError


def _params_file(args: argparse.Namespace) -> str:
    if Path(args.params).is_dir():
        raise ConfigError(f"--params {args.params} is a folder; pass the composed config file "
                          "(params.yaml, written by `leukemia-cnn params`)")
    return args.params


def _config(args: argparse.Namespace, root: Path):
    """The checked config of ``--params``, its paths.* values allowed for ``root``."""
    from leukemia_cnn.config import load_params
    from leukemia_cnn.pathrules import check_paths

    cfg = load_params(_params_file(args))
    check_paths(cfg, root)
    return cfg


def run_params(args: argparse.Namespace, root: Path) -> int:
    from omegaconf import OmegaConf

    from leukemia_cnn.config import compose, validate_config, write_params
    from leukemia_cnn.fileio import STDOUT, atomic_write, check_output
    from leukemia_cnn.pathrules import check_paths

    cfg = compose(args.overrides, root=root)
    # refuse before writing: params.yaml stays as conf/ composes it
    check_paths(validate_config(cfg), root)
    if args.check:  # exit 1 if --output does not hold the composed config
        current = OmegaConf.load(args.output) if Path(args.output).is_file() else None
        if current is None or OmegaConf.to_container(current) != OmegaConf.to_container(cfg):
            print(f"{args.output} differs from conf/ composed with {args.overrides or 'defaults'}; "
                  "run `leukemia-cnn params` to rewrite it", file=sys.stderr)
            return 1
        print(f"{args.output} matches conf/")
        return 0
    if args.output == STDOUT:  # the composed config on stdout; no file written
        with tempfile.TemporaryDirectory(prefix="leukemia-cnn-params-") as scratch:
            sys.stdout.write(write_params(cfg, Path(scratch) / "params.yaml").read_text())
        return 0
    # params.yaml is declared by DVC's Hydra integration (.dvc/config); another file is
    # replaced only when an earlier `params` wrote it and nobody edited it since.
    target = check_output(
        args.output, kind="file", root=root, flag="--output", owner="params",
        declared=root / "params.yaml",
        instead="Pass --output with a new file name, - to print it, or leave it out to write "
                "params.yaml")
    atomic_write(target, lambda tmp: write_params(cfg, tmp),
                 owner=None if target == root / "params.yaml" else "params")
    print(f"wrote {args.output}")
    kept = [item for item in args.overrides if not item.startswith(("hydra.", "~"))]
    if kept and target == root / "params.yaml":
        print(f"note: params.yaml holds {', '.join(kept)}, which conf/ does not: `dvc repro` "
              "uses it, but `dvc exp run` recomposes conf/ and drops it (check_config warns); "
              f"pass it with -S (`dvc exp run -S {shlex.quote(kept[0])}`) or set it in conf/",
              file=sys.stderr)
    return 0


def run_study(args: argparse.Namespace, root: Path) -> int:
    """Works in its own workspace: no --params of this project."""
    from leukemia_cnn.study import workspace as study

    experiments = (args.experiments.split(",") if args.experiments
                   else study.STUDY_EXPERIMENTS)
    study.main(root, args.source, args.name, experiments, args.seeds, args.jobs,
               tuple(args.overrides), dry_run=args.dry_run,
               sample_images=not args.no_sample_images, overwrite=args.overwrite_report)
    return 0


def run_check_config(args: argparse.Namespace, root: Path) -> int:
    from leukemia_cnn.config import write_config_check
    from leukemia_cnn.data.staging import dropped_overrides, restore_refused_params

    params = _params_file(args)
    with restore_refused_params(root, params):  # a refused `dvc exp run -S`
        written = write_config_check(_config(args, root), root, params)
    print(f"{params}: every knob is valid; wrote {written.relative_to(root)}")
    dropped = dropped_overrides(root, params)
    if dropped:
        print(f"leukemia-cnn check-config: warning: `dvc exp run` recomposed {params} from conf/ "
              f"and dropped {len(dropped)} override(s) the baseline commit had: "
              f"{', '.join(dropped)}. To keep one, pass it with -S (`dvc exp run -S "
              f"{dropped[0].split(' ')[0]}`) or set it in conf/", file=sys.stderr)
    return 0


def run_data_get(args: argparse.Namespace, root: Path) -> int:
    cfg = _config(args, root)
    from leukemia_cnn.data.ingest import get as ingest
    from leukemia_cnn.quality.validate_raw import check_staged

    ingest.run(cfg, root, source=args.source, variant=args.variant, output=args.output,
               validate=None if args.no_validate else check_staged,
               dvc_add=not args.no_dvc_add, discard_local=args.discard_local_changes)
    return 0


def run_data_push(args: argparse.Namespace, root: Path) -> int:
    from leukemia_cnn.data.remote import push

    return push(root, args.remote)


def run_data_synth(args: argparse.Namespace, root: Path) -> int:
    cfg = _config(args, root)
    from leukemia_cnn.data import synthetic as synth

    synth.run(cfg, root, scale=args.scale, seed=args.seed, output=args.output,
              if_empty=args.if_empty, dvc_add=not args.no_dvc_add,
              discard_local=args.discard_local_changes)
    return 0


def run_stage(module_name: str, args: argparse.Namespace, root: Path) -> int:
    """A pipeline stage or ``summary``: ``module_name.run(cfg, root)``; its result, if any, as JSON."""
    cfg = _config(args, root)
    module = importlib.import_module(module_name)
    result = module.run(cfg, root)
    if result:
        print(json.dumps(result, indent=2, default=str))
    return 0


def run_promote(args: argparse.Namespace, root: Path) -> int:
    cfg = _config(args, root)
    from leukemia_cnn.registry import register

    chosen = register.promote(cfg, root, dry_run=args.dry_run, by=args.by, data=args.data)
    if chosen is None and args.data != register.ALL_DATA:
        raise LeukemiaCNNError("nothing to promote: no version is eligible (see the list "
                               "above); train a configuration that does not collapse")
    return 0


def run_report(args: argparse.Namespace, root: Path) -> int:
    cfg = _config(args, root)
    from leukemia_cnn.study import report

    if args.sweep_id:
        cfg.report.sweep_ids = list(args.sweep_id)
    if args.name is not None:
        cfg.report.name = args.name
    if args.no_sample_images:
        cfg.report.sample_images = False
    report.run(cfg, root)
    return 0


def run_predict(args: argparse.Namespace, root: Path) -> int:
    cfg = _config(args, root)
    from leukemia_cnn.serving import predict

    result = predict.run(cfg, root, args.images, model_uri=args.model_uri, fmt=args.format,
                         output=args.output, reject_unfamiliar=args.reject_unfamiliar)
    skipped = int(result[predict.ERROR_COLUMN].notna().sum())
    if skipped:
        print(f"leukemia-cnn predict: error: skipped {skipped} of {len(result)} images (see "
              f"above; their rows are marked in column `{predict.ERROR_COLUMN}`)",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.reject_unfamiliar and predict.flagged_rows(result).any():
        return EXIT_UNFAMILIAR
    return 0


def run_explain(args: argparse.Namespace, root: Path) -> int:
    cfg = _config(args, root)
    from leukemia_cnn.serving import explain

    explain.run(cfg, root, args.images, model_uri=args.model, output=args.output)
    return 0


def run_card(args: argparse.Namespace, root: Path) -> int:
    cfg = _config(args, root)
    from leukemia_cnn.registry import card

    card.run(cfg, root, args.version)
    return 0


def run_drift(args: argparse.Namespace, root: Path) -> int:
    cfg = _config(args, root)
    from leukemia_cnn.monitoring import drift
    from leukemia_cnn.monitoring.drift_report import exit_status

    found = drift.run(cfg, root, args.source, model_uri=args.model_uri,
                      guard=not args.no_guard, output=args.output, max_files=args.max_files)
    return exit_status(found.verdict)
