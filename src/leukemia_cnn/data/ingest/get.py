"""``leukemia-cnn data get``: bring a raw image tree into ``data/raw/<Class>/`` and version it.

The source (``--source``, default ``data.source``) is ``synthetic`` (the built-in generator),
``kaggle`` (a download with the Kaggle API), a zip (the Kaggle archive, ``data.variant`` picking
``Original/`` or ``Segmented/``) or a folder of ``<Class>/<image>`` trees; docs/data-quality.md
gives the rules for class folders and skipped files. The bytes are copied unchanged within the
``validation`` bounds, checked by the raw-data suite the CLI passes in, swapped in as
:mod:`leukemia_cnn.data.rawtree` says and versioned in ``data.dvc``.
"""

from __future__ import annotations

import secrets
import shutil
import time
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from leukemia_cnn.config import VARIANTS
from leukemia_cnn.config_schema import Config, KaggleData, ValidationConfig
from leukemia_cnn.data.imaging import SkippedFile
from leukemia_cnn.data.ingest.kaggle_api import download_from_kaggle
from leukemia_cnn.data.ingest.plan import MAX_LISTED, Plan, plan
from leukemia_cnn.data.ingest.sources import Entry, FolderSource, ZipSource, open_source
from leukemia_cnn.data.lineage import kaggle_uri, origin_of_path
from leukemia_cnn.data.rawtree import (
    RawTarget,
    check_raw_output,
    commit_hint,
    dvc_add_raw_tree,
    raw_output,
    write_raw_tree,
)
from leukemia_cnn.errors import ConfigError, DataError
from leukemia_cnn.fileio import shown

# Checks a staged tree before it is swapped in (cfg, staging, staged path -> source name,
# label, out_dir, progress) -> warning lines; the CLI passes quality's raw-data suite.
StagedCheck = Callable[[Config, Path, Mapping[str, str], str, Path, bool], list[str]]


@dataclass
class IngestResult:
    """What ``data get`` did: where from, how many images per class, what it skipped."""

    source: str
    root: str
    out_dir: Path
    counts_per_class: dict[str, int]
    skipped: list[SkippedFile]
    ignored: int
    warnings: list[str]


def _check_plan_size(plan_: Plan, entries: Sequence[Entry], bounds: ValidationConfig,
                     label: str) -> None:
    if len(plan_.copies) > bounds.max_files:
        raise DataError(f"{label}: {len(plan_.copies):,} images exceed validation.max_files = "
                        f"{bounds.max_files:,}; raise the bound if this is expected")
    sizes = {entry.name: entry.size for entry in entries}
    declared = sum(sizes[name] for name in plan_.copies.values())
    if declared > bounds.max_total_bytes:
        raise DataError(f"{label}: the images take {declared:,} bytes uncompressed, more than "
                        f"validation.max_total_bytes = {bounds.max_total_bytes:,} (archive bomb "
                        "guard); raise the bound if this is expected")


def _copy_file(source: ZipSource | FolderSource, name: str, target: Path, budget: int,
               label: str) -> int:
    """Copy one entry byte for byte; stop once more than ``budget`` bytes came out."""
    written = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("xb") as writer:  # an OSError here or in write() is the destination's
        try:
            reader = source.open(name)
        except OSError as exc:
            raise DataError(f"{label}: cannot read {name} ({exc.strerror or exc})") from exc
        with reader:
            while chunk := _read(reader, name, label):
                written += len(chunk)
                if written > budget:
                    raise DataError(f"{label}: {name} decompresses to more than the remaining "
                                    "validation.max_total_bytes (archive bomb guard)")
                writer.write(chunk)
    return written


def _read(reader, name: str, label: str) -> bytes:
    """The next chunk of a source entry; a failed read blames the source."""
    try:
        return reader.read(1 << 20)  # 1 MiB
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DataError(f"{label}: entry {name} is damaged ({exc}); download the archive "
                        "again") from exc
    except OSError as exc:
        raise DataError(f"{label}: cannot read {name} ({exc.strerror or exc})") from exc


def _check_pixels(path: Path, shown: str, max_pixels: int) -> None:
    """Refuse an image whose header declares more than ``max_pixels`` (nothing is decoded)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                width, height = image.size
        except Image.DecompressionBombError as exc:
            raise DataError(f"{shown}: {exc} (decompression bomb guard); remove the file") from exc
        except Exception:  # noqa: BLE001 - undecodable files are the raw-data suite's to report
            return
    if width * height > max_pixels:
        raise DataError(f"{shown}: {width}x{height} = {width * height:,} pixels exceed "
                        f"validation.max_image_pixels = {max_pixels:,} (decompression bomb guard); "
                        "remove the file or raise the bound")


def copy_tree(source: ZipSource | FolderSource, plan_: Plan, staging: Path,
              bounds: ValidationConfig, progress: bool = True) -> None:
    """Write every planned file to ``staging/<Class>/<name>``, within the ``validation``
    bounds (``max_total_bytes``, ``max_image_pixels``)."""
    from tqdm import tqdm

    total = 0
    for target, name in tqdm(sorted(plan_.copies.items()), desc="data get: copying",
                             unit="img", disable=not progress):
        path = staging / target
        total += _copy_file(source, name, path, bounds.max_total_bytes - total, source.label)
        _check_pixels(path, f"{source.label}: {name}", bounds.max_image_pixels)


def _check_paths(source_path: Path, out_dir: Path) -> None:
    """Refuse a source and an output that overlap, or an output that is a file."""
    if source_path.is_relative_to(out_dir) or out_dir.is_relative_to(source_path):
        raise DataError(f"source {source_path} and output {out_dir} overlap; ingest from a "
                        "folder outside the raw image folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"output {out_dir} exists and is not a folder; remove it")


def ingest(cfg: Config, source_path: Path, out_dir: Path | RawTarget,
           variant: str | None = None, label: str | None = None,
           validate: StagedCheck | None = None, progress: bool = True,
           version: Callable[[], object] | None = None) -> IngestResult:
    """Copy the images of ``source_path`` (zip or folder) into ``out_dir/<Class>/``; on any
    error ``out_dir`` is left unchanged.

    Parameters
    ----------
    cfg : Config
        The composed config: ``data.classes``, ``data.variant``, ``data.skip_unknown_classes``,
        ``validation`` (the suite and the ingestion bounds).
    source_path : Path
        A zip archive or a folder; only read.
    out_dir : Path or RawTarget
        The raw image folder to replace (``paths.raw_dir``); a bare path is a new folder or
        one an earlier ``leukemia-cnn data`` run wrote (marked or recorded), left unmarked.
    variant, label : str, optional
        Overrides ``data.variant``; how to name the source in messages (default: its path).
    validate : StagedCheck, optional
        Checks the new tree before it is swapped in (warning lines, or DataError): the CLI
        passes :func:`leukemia_cnn.quality.validate_raw.check_staged`; None skips it (the
        validate_raw stage still stops the pipeline).
    version : callable, optional
        ``dvc add`` of the new tree, run while the previous one waits aside (put back when it
        fails): :func:`leukemia_cnn.data.rawtree.write_raw_tree`.
    """

    classes = cfg.data.classes
    variant = variant or (cfg.data.variant if isinstance(cfg.data, KaggleData) else None)
    skip_unknown = isinstance(cfg.data, KaggleData) and cfg.data.skip_unknown_classes
    target = out_dir if isinstance(out_dir, RawTarget) else RawTarget(Path(out_dir), False, None)
    source_path, out_dir = Path(source_path).resolve(), target.out_dir.resolve()
    _check_paths(source_path, out_dir)
    with open_source(source_path) as source:
        label = label or source.label
        entries = source.entries()
        plan_ = plan(entries, classes, variant, skip_unknown, label)
        plan_.skipped = sorted(plan_.skipped + source.skipped, key=lambda item: item.path)
        _check_plan_size(plan_, entries, cfg.validation, label)
        target.check_local_files()  # before the work, not after it

        def fill(staging: Path) -> list[str]:
            staging.mkdir()
            copy_tree(source, plan_, staging, cfg.validation, progress)
            return validate(cfg, staging, plan_.copies, label, out_dir, progress) if validate else []

        found = write_raw_tree(target, fill, version)

    counts = Counter(target.split("/", 1)[0] for target in plan_.copies)
    return IngestResult(source=label, root=plan_.root, out_dir=out_dir,
                        counts_per_class={cls: counts.get(cls, 0) for cls in classes},
                        skipped=plan_.skipped, ignored=plan_.ignored, warnings=found)


def _report(result: IngestResult, root: Path, seconds: float) -> None:
    per_class = ", ".join(f"{cls} {n:,}" for cls, n in result.counts_per_class.items())
    print(f"ingested {sum(result.counts_per_class.values()):,} images from {result.source}"
          f"{f' ({result.root})' if result.root else ''} into {shown(result.out_dir, root)} "
          f"in {seconds:.1f} s: {per_class}")
    if result.ignored:
        print(f"left out {result.ignored:,} images outside {result.root or 'the class folders'}")
    if result.skipped:
        print(f"skipped {len(result.skipped)} files or folders (not images):")
        for item in result.skipped[:MAX_LISTED]:
            print(f"  {item.path}: {item.reason}")
        if len(result.skipped) > MAX_LISTED:
            print(f"  ... and {len(result.skipped) - MAX_LISTED} more")
    for warning in result.warnings:
        print(f"warning: {warning} (see `leukemia-cnn validate-raw`)")


def run(cfg: Config, root: Path, source: str | None = None, variant: str | None = None,
         output: str | None = None, validate: StagedCheck | None = None, dvc_add: bool = True,
         progress: bool = True, discard_local: bool = False) -> IngestResult | None:
    """``leukemia-cnn data get``: ingest ``source`` (default ``data.source``) and ``dvc add`` it.

    A ``source`` given here is relative to the current folder; ``data.source`` is relative to
    the project ``root``. Returns None for the synthetic source (see :func:`synth.run`).
    ``discard_local``: move the files of the output folder that no record holds aside
    instead of refusing (``--discard-local-changes``).
    """
    chosen = _chosen_source(cfg, root, source)
    if variant is not None and variant not in VARIANTS:
        raise ConfigError(f"--variant {variant!r} is invalid; allowed: {', '.join(VARIANTS)}")
    if chosen == "synthetic":
        from leukemia_cnn.data import synthetic as synth

        synth.run(cfg, root, output=output, dvc_add=dvc_add, discard_local=discard_local)
        return None

    raw_dir = root / cfg.paths.raw_dir
    out_dir = check_raw_output(raw_output(output, raw_dir), root,
                               inputs=[] if chosen == "kaggle" else [Path(chosen)], label=output)
    target = RawTarget.of(root, out_dir, raw_dir, discard_local, dvc_add)
    # where the data came from, as runs record it (lineage.py)
    origin = ({"source": "kaggle", "uri": kaggle_uri(_kaggle_dataset(cfg)), "name": "kaggle"}
              if chosen == "kaggle" else origin_of_path(Path(chosen)))
    versioned: list[Path] = []

    def version() -> None:  # while the previous tree waits aside
        versioned.append(dvc_add_raw_tree(target, origin))

    started = time.perf_counter()
    options = {"validate": validate, "progress": progress, "version": version if dvc_add else None}
    if chosen == "kaggle":
        result = _ingest_kaggle(cfg, target, variant, **options)
    else:
        result = ingest(cfg, Path(chosen), target, variant, **options)
    _report(result, root, time.perf_counter() - started)
    if cfg.data.source == "synthetic":
        print("note: params.yaml says data.source=synthetic; run `leukemia-cnn params data=kaggle` "
              "so that runs are tagged with the real source")
    if versioned:
        print(commit_hint(root, versioned[0], out_dir))
    return result


def _chosen_source(cfg: Config, root: Path, source: str | None) -> str | Path:
    """A keyword (``synthetic``, ``kaggle``) or the path of a zip or folder (see :func:`run`)."""
    chosen, base = (cfg.data.source, root) if source is None else (source, Path.cwd())
    if chosen in ("synthetic", "kaggle"):
        return chosen
    path = Path(chosen).expanduser()
    return path if path.is_absolute() else base / path


def _kaggle_dataset(cfg: Config) -> str:
    dataset = cfg.data.kaggle_dataset if isinstance(cfg.data, KaggleData) else None
    if not dataset:
        raise ConfigError("config key `data.kaggle_dataset` is missing; compose the Kaggle "
                          "data config with `leukemia-cnn params data=kaggle`")
    return str(dataset)


def _ingest_kaggle(cfg: Config, target: RawTarget, variant: str | None,
                   **options) -> IngestResult:
    """Download ``data.kaggle_dataset`` beside the output, ingest it, delete the download."""
    dataset = _kaggle_dataset(cfg)
    out_dir = target.out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    download = out_dir.with_name(f".kaggle-download-{secrets.token_hex(4)}")
    download.mkdir()
    try:
        archive = download_from_kaggle(dataset, download)
        return ingest(cfg, archive, target, variant, label=f"Kaggle {dataset}", **options)
    finally:
        shutil.rmtree(download, ignore_errors=True)
