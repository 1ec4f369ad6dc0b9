"""``leukemia-cnn data get``: bring a raw image tree into ``data/raw/<Class>/`` and version it.

Sources (``--source``, default ``data.source``):

- ``synthetic``: the built-in generator (:mod:`leukemia_cnn.data.synthetic`), the default;
- ``kaggle``: the Kaggle API (the official ``kaggle`` package, when installed and credentials
  are present) downloads ``data.kaggle_dataset``, then ingests that zip;
- a zip file: the Kaggle archive as downloaded (``Original/<Class>/*.jpg`` and
  ``Segmented/<Class>/*.jpg``; ``data.variant`` picks one) or any zip of ``<Class>/`` trees;
- a folder: the unpacked archive, or any folder of ``<Class>/<image>`` trees.

Class folders match ``data.classes`` case-insensitively and are written with the configured
spelling; file names (and sub-folders) are kept and the bytes copied unchanged. Folders that
match no class are an error unless ``data.skip_unknown_classes``; operating-system junk and
non-image files are skipped and reported. The source is only read: zip entries that are links,
absolute or climb out with ``..`` are refused, as are links that leave a source folder; the
bytes written, the number of files and each image's pixel count are bounded
(``validation.max_total_bytes``, ``max_files``, ``max_image_pixels``).

The tree is written next to ``paths.raw_dir``, checked with the raw-data suite of
:mod:`leukemia_cnn.quality.validate_raw` (the CLI passes it in), and only then swapped in, so
an interrupted or refused ingestion leaves the previous ``data/raw`` as it was. Finally
``dvc add`` versions it in ``data.dvc``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import shutil
import stat
import time
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from omegaconf import DictConfig, OmegaConf
from PIL import Image

from leukemia_cnn.config import VARIANTS, knob
from leukemia_cnn.data.filekinds import printable, skip_problem
from leukemia_cnn.data.imaging import OS_JUNK, SkippedFile, skip_reason
from leukemia_cnn.data.lineage import kaggle_uri, origin_of_path, record_origin
from leukemia_cnn.data.staging import staging_folder
from leukemia_cnn.data.synthetic import (
    RAW_OUTPUT,
    check_dvc_target,
    check_raw_output,
    raw_output,
)
from leukemia_cnn.errors import ConfigError, DataError, LeukemiaCNNError
from leukemia_cnn.fileio import declared_by, mark_output, record_output, shown, swap_folder

KEYWORD_SOURCES = ("synthetic", "kaggle")
# Checks a staged tree before it is swapped in (cfg, staging, staged path -> source name,
# label, out_dir, progress) -> warning lines; the CLI passes quality's raw-data suite.
StagedCheck = Callable[[DictConfig, Path, Mapping[str, str], str, Path, bool], list[str]]
# Skipped files listed one by one on the terminal (all of them are in the returned result).
MAX_LISTED = 20
CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    """A file of a source: its POSIX path inside the source and its (declared) size."""

    name: str
    size: int


@dataclass
class Plan:
    """What an ingestion copies, from where inside the source, and what it leaves out.

    ``copies`` maps each target path (``<Class>/<name>``, the configured class spelling) to
    the source entry it is copied from.
    """

    root: str
    copies: dict[str, str]
    skipped: list[SkippedFile] = field(default_factory=list)
    ignored: int = 0
    unknown: dict[str, int] = field(default_factory=dict)


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
    dvc_file: Path | None = None


# --------------------------------------------------------------------------------------------
# Sources: list entries safely, open them read-only
# --------------------------------------------------------------------------------------------

class ZipSource:
    """A zip archive, read in place; unsafe entries refuse the whole archive."""

    def __init__(self, path: Path):
        self.path = path
        self.label = path.name
        self.skipped: list[SkippedFile] = []  # a zip holds no special files; names are text
        try:
            self._archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"{path}: not a readable zip archive ({exc}); download it again or "
                            "unpack it and pass the folder with --source") from exc
        self._by_name: dict[str, zipfile.ZipInfo] = {}

    def entries(self) -> list[Entry]:
        entries = []
        for info in self._archive.infolist():
            name = info.filename.replace("\\", "/")
            where = f"{self.label}: entry {info.filename!r}"
            if stat.S_ISLNK(info.external_attr >> 16):
                raise DataError(f"{where} is a symbolic link; archives with links are refused "
                                "(a link can point outside the data). Unpack it yourself and "
                                "pass the folder with --source")
            if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
                raise DataError(f"{where} has an absolute path; refusing to extract the archive")
            if ".." in name.split("/"):
                raise DataError(f"{where} climbs out of the extraction folder ('..'); refusing "
                                "to extract the archive (path traversal)")
            if info.is_dir():
                continue
            if info.flag_bits & 0x1:
                raise DataError(f"{where} is encrypted; unpack the archive yourself and pass "
                                "the folder with --source")
            entries.append(Entry(_normal(name), info.file_size))
            self._by_name[entries[-1].name] = info
        return entries

    def open(self, name: str) -> BinaryIO:
        return self._archive.open(self._by_name[name])

    def close(self) -> None:
        self._archive.close()


class FolderSource:
    """A folder, read in place; links to folders and links leaving it are refused."""

    def __init__(self, path: Path):
        self.path = path.resolve()
        self.label = str(path)
        # FIFOs, devices, sockets and names that are not UTF-8 (filekinds.py), with why
        self.skipped: list[SkippedFile] = []

    def entries(self) -> list[Entry]:
        entries = []
        for folder, dirnames, filenames in os.walk(self.path):
            here = Path(folder)
            for dirname in sorted(dirnames):
                if (here / dirname).is_symlink():
                    raise DataError(f"{here / dirname} is a link to a folder "
                                    f"({os.path.realpath(here / dirname)}); links to folders are "
                                    "not followed: copy the folder in instead")
            dirnames.sort()
            for filename in sorted(filenames):
                path = here / filename
                if path.is_symlink():
                    target = Path(os.path.realpath(path))
                    if not target.is_relative_to(self.path):
                        raise DataError(f"{path} is a symbolic link to {target}, outside the "
                                        f"source folder {self.label}; refusing to follow it. "
                                        "Copy the file in instead of linking it")
                    if not target.exists():
                        raise DataError(f"{path} is a broken symbolic link (to {target})")
                relative = path.relative_to(self.path).as_posix()
                reason = skip_problem(path, relative)
                if reason is not None:
                    self.skipped.append(SkippedFile(printable(relative), reason))
                    continue
                entries.append(Entry(path.relative_to(self.path).as_posix(), path.stat().st_size))
        return entries

    def open(self, name: str) -> BinaryIO:
        return (self.path / name).open("rb")

    def close(self) -> None:
        pass


def _normal(name: str) -> str:
    return "/".join(part for part in name.split("/") if part not in ("", "."))


@contextmanager
def open_source(path: Path) -> Iterator[ZipSource | FolderSource]:
    """The zip file or folder at ``path`` as a source (DataError when it is neither)."""
    if path.is_dir():
        source: ZipSource | FolderSource = FolderSource(path)
    elif path.is_file():
        source = ZipSource(path)
    else:
        raise DataError(f"source {path} does not exist; pass the Kaggle zip, an image folder, "
                        "`kaggle` or `synthetic` with --source (or set data.source)")
    try:
        yield source
    finally:
        source.close()


# --------------------------------------------------------------------------------------------
# Planning: which entries become which files of data/raw
# --------------------------------------------------------------------------------------------

def _junk_folder(parts: Sequence[str]) -> str | None:
    for index, part in enumerate(parts[:-1]):
        if part.startswith(".") or part.lower() in OS_JUNK:
            return "/".join(parts[: index + 1]) + "/"
    return None


def _class_root(images: list[list[str]], classes: Sequence[str], variant: str | None,
                label: str) -> tuple[str, ...]:
    """The folder inside the source whose sub-folders are the classes."""
    lower = {name.lower() for name in classes}
    roots = {tuple(parts[:index]) for parts in images
             for index, part in enumerate(parts[:-1]) if part.lower() in lower}
    if not roots:
        tops = sorted({parts[0] + ("/" if len(parts) > 1 else "") for parts in images})[:10]
        raise DataError(f"{label}: no folder named after a class ({', '.join(classes)}, any "
                        f"case) holds images; expected <Class>/<image> or the Kaggle layout "
                        f"Original/<Class>/<image>. Found at the top: {', '.join(tops) or 'nothing'}")
    variants = {name.lower(): name for name in VARIANTS}
    by_variant = {root for root in roots if root and root[-1].lower() in variants}
    if by_variant:
        found = sorted({root[-1] for root in by_variant})
        if variant is None:
            raise ConfigError(f"{label} holds the variants {', '.join(found)}; choose one with "
                              f"config key `data.variant` or --variant (allowed: "
                              f"{', '.join(VARIANTS)})")
        chosen = {root for root in by_variant if root[-1].lower() == variant.lower()}
        if not chosen:
            raise DataError(f"{label} has no {variant}/ folder (data.variant = {variant}); it "
                            f"has {', '.join(f'{name}/' for name in found)}: set data.variant "
                            "or pass --variant")
        roots = chosen
    depth = min(len(root) for root in roots)
    shallowest = sorted(root for root in roots if len(root) == depth)
    if len(shallowest) > 1:
        listed = ", ".join("/".join(root) + "/" for root in shallowest)
        raise DataError(f"{label}: class folders found under several folders ({listed}); pass "
                        "the one to ingest with --source")
    return shallowest[0]


def plan(entries: Sequence[Entry], classes: Sequence[str], variant: str | None = None,
         skip_unknown: bool = False, label: str = "source") -> Plan:
    """Map the entries of a source to ``<Class>/<name>`` targets, without reading any file.

    Parameters
    ----------
    entries : sequence of Entry
        The files of the source (see :class:`ZipSource`, :class:`FolderSource`).
    classes : sequence of str
        ``data.classes``; folder names match them case-insensitively.
    variant : str or None
        ``data.variant``: the Kaggle sub-folder (Original or Segmented) when the source has them.
    skip_unknown : bool
        ``data.skip_unknown_classes``: skip folders that match no class (reported) instead of
        raising DataError.
    label : str
        How the source is named in messages.
    """
    by_lower = {name.lower(): name for name in classes}
    skipped: dict[str, SkippedFile] = {}
    images: list[list[str]] = []
    for entry in entries:
        parts = entry.name.split("/")
        folder = _junk_folder(parts)
        if folder is not None:
            skipped.setdefault(folder, SkippedFile(folder, "hidden or operating-system folder"))
            continue
        reason = skip_reason(parts[-1])
        if reason is not None:
            skipped[entry.name] = SkippedFile(entry.name, reason)
            continue
        images.append(parts)
    if not images:
        raise DataError(f"{label} holds no image files ({len(entries)} other files)")

    root = _class_root(images, classes, variant, label)
    prefix = "/".join(root) + "/" if root else ""
    copies: dict[str, str] = {}
    taken: dict[str, str] = {}
    unknown: Counter[str] = Counter()
    loose: list[str] = []
    ignored = 0
    for parts in images:
        name = "/".join(parts)
        if tuple(parts[: len(root)]) != root:
            ignored += 1  # e.g. the other variant of the Kaggle archive
            continue
        relative = parts[len(root):]
        if len(relative) == 1:
            loose.append(name)
            continue
        cls = by_lower.get(relative[0].lower())
        if cls is None:
            unknown[prefix + relative[0] + "/"] += 1
            continue
        target = "/".join([cls, *relative[1:]])
        if target.lower() in taken:
            raise DataError(f"{label}: {name} and {taken[target.lower()]} would both become "
                            f"{target} (class folders match case-insensitively); rename one")
        taken[target.lower()] = name
        copies[target] = name

    if (unknown or loose) and not skip_unknown:
        listed = [f"{folder} ({_files(count)})" for folder, count in sorted(unknown.items())]
        listed += [f"{name} (outside any class folder)" for name in loose[:MAX_LISTED]]
        raise DataError(f"{label}: images outside the configured class folders: "
                        f"{', '.join(listed)}. Rename the folders to one of {', '.join(classes)} "
                        "(any case), move or remove the files, or set "
                        "data.skip_unknown_classes=true to skip them")
    for folder, count in unknown.items():
        skipped[folder] = SkippedFile(folder, f"not a configured class; {_files(count)} "
                                              "skipped (data.skip_unknown_classes)")
    for name in loose:
        skipped[name] = SkippedFile(name, "image outside any class folder; skipped "
                                          "(data.skip_unknown_classes)")
    if not copies:
        raise DataError(f"{label}: no images inside the class folders {', '.join(classes)}")
    return Plan(root=prefix, copies=copies, skipped=sorted(skipped.values(), key=lambda s: s.path),
                ignored=ignored, unknown=dict(unknown))


# --------------------------------------------------------------------------------------------
# Copying and checking
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bounds:
    """Ingestion limits (``validation.max_total_bytes``, ``max_files``, ``max_image_pixels``)."""

    max_total_bytes: int
    max_files: int
    max_image_pixels: int

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Bounds:
        return cls(**{key: int(knob(cfg, f"validation.{key}"))
                      for key in ("max_total_bytes", "max_files", "max_image_pixels")})


def _check_plan_size(plan_: Plan, entries: Sequence[Entry], bounds: Bounds, label: str) -> None:
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
    try:
        with source.open(name) as reader, target.open("xb") as writer:
            while chunk := reader.read(CHUNK):
                written += len(chunk)
                if written > budget:
                    raise DataError(f"{label}: {name} decompresses to more than the remaining "
                                    "validation.max_total_bytes (archive bomb guard)")
                writer.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DataError(f"{label}: entry {name} is damaged ({exc}); download the archive "
                        "again") from exc
    except OSError as exc:
        raise DataError(f"{label}: cannot read {name} ({exc.strerror or exc})") from exc
    return written


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


def copy_tree(source: ZipSource | FolderSource, plan_: Plan, staging: Path, bounds: Bounds,
              progress: bool = True) -> None:
    """Write every planned file to ``staging/<Class>/<name>``, within the bounds."""
    from tqdm import tqdm

    total = 0
    for target, name in tqdm(sorted(plan_.copies.items()), desc="data get: copying",
                             unit="img", disable=not progress):
        path = staging / target
        total += _copy_file(source, name, path, bounds.max_total_bytes - total, source.label)
        _check_pixels(path, f"{source.label}: {name}", bounds.max_image_pixels)


def _files(count: int) -> str:
    return f"{count} file{'' if count == 1 else 's'}"


# --------------------------------------------------------------------------------------------
# The Kaggle API
# --------------------------------------------------------------------------------------------

def kaggle_credentials_present() -> bool:
    """Whether the official ``kaggle`` client would find API credentials."""
    if os.environ.get("KAGGLE_API_TOKEN") or (os.environ.get("KAGGLE_USERNAME")
                                             and os.environ.get("KAGGLE_KEY")):
        return True
    folders = [Path(os.environ["KAGGLE_CONFIG_DIR"])] if os.environ.get("KAGGLE_CONFIG_DIR") else []
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    folders += [Path.home() / ".kaggle", config_home / "kaggle"]
    return any((folder / name).is_file() for folder in folders
               for name in ("kaggle.json", "access_token"))


def download_from_kaggle(dataset: str, dest: Path) -> Path:
    """Download ``dataset`` (``owner/name``) as one zip into ``dest`` with the Kaggle API."""
    manual = (f"or download it by hand from https://www.kaggle.com/datasets/{dataset} (the "
              "Download button gives a zip) and run `leukemia-cnn data get --source <that zip>`")
    if importlib.util.find_spec("kaggle") is None:
        raise LeukemiaCNNError("the Kaggle API needs the official `kaggle` package, which is not "
                               f"installed (it is optional: `pip install kaggle`), {manual}")
    if not kaggle_credentials_present():
        raise LeukemiaCNNError("no Kaggle API credentials found: create a token at "
                               "https://www.kaggle.com/settings (API > Create New Token) and "
                               "save it as ~/.kaggle/kaggle.json, or set KAGGLE_USERNAME and "
                               f"KAGGLE_KEY (or KAGGLE_API_TOKEN); {manual}")
    print(f"downloading {dataset} with the Kaggle API ...")
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi

        api = KaggleApi()
        api.authenticate()
        api.dataset_download_files(dataset, path=str(dest), quiet=False, unzip=False)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - network and auth errors vary
        raise LeukemiaCNNError(f"the Kaggle API could not download {dataset} "
                               f"({type(exc).__name__}: {exc}); {manual}") from exc
    archives = sorted(dest.glob("*.zip"))
    if len(archives) != 1:
        raise LeukemiaCNNError(f"the Kaggle API download of {dataset} left "
                               f"{[p.name for p in dest.iterdir()]} in {dest}, not one zip; {manual}")
    return archives[0]


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------

def ingest(cfg: DictConfig, source_path: Path, out_dir: Path, variant: str | None = None,
           label: str | None = None, validate: StagedCheck | None = None,
           progress: bool = True, mark: bool = False,
           declared: Path | None = None) -> IngestResult:
    """Copy the images of ``source_path`` (zip or folder) into ``out_dir/<Class>/``.

    The tree is written beside ``out_dir`` and swapped in only once complete and (with
    ``validate``) passing the raw-data suite; on any error ``out_dir`` is left unchanged.

    Parameters
    ----------
    cfg : DictConfig
        The composed config: ``data.classes``, ``data.variant``, ``data.skip_unknown_classes``,
        ``validation`` (the suite and the ingestion bounds).
    source_path : Path
        A zip archive or a folder; only read.
    out_dir : Path
        The raw image folder to replace (``paths.raw_dir``).
    variant : str, optional
        Overrides ``data.variant``.
    label : str, optional
        How to name the source in messages (default: its path).
    validate : callable, optional
        Checks the new tree before it is swapped in: ``validate(cfg, staging, names, label,
        out_dir, progress)`` returns warning lines or raises DataError. The CLI passes the
        raw-data suite (:func:`leukemia_cnn.quality.validate_raw.check_staged`); None skips it
        (the validate_raw stage still stops the pipeline).
    mark : bool
        Mark the new tree as a ``leukemia-cnn data`` output (any folder but ``paths.raw_dir``),
        so that a later run may replace it (see :func:`leukemia_cnn.fileio.check_output`).
    declared : Path, optional
        The folder ``data.dvc`` declares. An existing ``out_dir`` is replaced only when it is
        that folder or an earlier ``leukemia-cnn data`` output (:func:`fileio.is_own`).
    """

    classes = [str(name) for name in cfg.data.classes]
    variant = variant or OmegaConf.select(cfg, "data.variant", default=None)
    skip_unknown = bool(knob(cfg, "data.skip_unknown_classes"))
    bounds = Bounds.from_config(cfg)
    source_path, out_dir = Path(source_path).resolve(), Path(out_dir).resolve()
    if source_path.is_relative_to(out_dir) or out_dir.is_relative_to(source_path):
        raise DataError(f"source {source_path} and output {out_dir} overlap; ingest from a "
                        "folder outside the raw image folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"output {out_dir} exists and is not a folder; remove it")

    with open_source(source_path) as source:
        label = label or source.label
        entries = source.entries()
        plan_ = plan(entries, classes, variant, skip_unknown, label)
        plan_.skipped = sorted(plan_.skipped + source.skipped, key=lambda item: item.path)
        _check_plan_size(plan_, entries, bounds, label)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        with staging_folder(out_dir) as (staging, token):
            staging.mkdir()
            copy_tree(source, plan_, staging, bounds, progress)
            found = (validate(cfg, staging, plan_.copies, label, out_dir, progress)
                     if validate else [])
            if mark:
                mark_output(staging, RAW_OUTPUT)
            swap_folder(staging, out_dir, token, RAW_OUTPUT, declared)

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


def resolve_source(source: str, base: Path) -> str | Path:
    """A keyword (``synthetic``, ``kaggle``) or the path of a zip or folder, relative to ``base``."""
    if source in KEYWORD_SOURCES:
        return source
    path = Path(source).expanduser()
    return path if path.is_absolute() else base / path


def run(cfg: DictConfig, root: Path, source: str | None = None, variant: str | None = None,
         output: str | None = None, validate: StagedCheck | None = None, dvc_add: bool = True,
         progress: bool = True) -> IngestResult | None:
    """``leukemia-cnn data get``: ingest ``source`` (default ``data.source``) and ``dvc add`` it.

    A ``source`` given here is relative to the current folder; ``data.source`` is relative to
    the project ``root``. Returns None for the synthetic source (see :func:`synth.run`).
    """
    root = Path(root)
    if source is None:
        configured = OmegaConf.select(cfg, "data.source", default=None)
        if not configured:
            raise ConfigError("config key `data.source` is missing; allowed: synthetic, kaggle or "
                              "the path of a Kaggle zip or image folder")
        chosen = resolve_source(str(configured), root)
    else:
        chosen = resolve_source(source, Path.cwd())
    if variant is not None and variant not in VARIANTS:
        raise ConfigError(f"--variant {variant!r} is invalid; allowed: {', '.join(VARIANTS)}")
    if chosen == "synthetic":
        from leukemia_cnn.data import synthetic as synth

        synth.run(cfg, root, output=output, dvc_add=dvc_add)
        return None

    raw_dir = root / str(cfg.paths.raw_dir)
    out_dir = check_raw_output(raw_output(output, raw_dir), root,
                               inputs=[] if chosen == "kaggle" else [Path(chosen)], label=output)
    if dvc_add:  # refuse an output DVC cannot version before writing anything
        check_dvc_target(root, out_dir)
    # The raw folder DVC versions holds no marker: it is recorded beside it instead.
    mark, declared = out_dir != raw_dir.resolve(), declared_by(root, "data.dvc")
    started = time.perf_counter()
    if chosen == "kaggle":
        dataset = OmegaConf.select(cfg, "data.kaggle_dataset", default=None)
        if not dataset:
            raise ConfigError("config key `data.kaggle_dataset` is missing; compose the Kaggle "
                              "data config with `leukemia-cnn params data=kaggle`")
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        download = out_dir.with_name(f".kaggle-download-{secrets.token_hex(4)}")
        download.mkdir()
        try:
            archive = download_from_kaggle(str(dataset), download)
            result = ingest(cfg, archive, out_dir, variant, label=f"Kaggle {dataset}",
                            validate=validate, progress=progress, mark=mark, declared=declared)
        finally:
            shutil.rmtree(download, ignore_errors=True)
        origin = {"source": "kaggle", "uri": kaggle_uri(str(dataset)), "name": "kaggle"}
    else:
        result = ingest(cfg, Path(chosen), out_dir, variant, validate=validate, progress=progress,
                        mark=mark, declared=declared)
        origin = origin_of_path(Path(chosen))
    if not mark:
        record_output(out_dir, RAW_OUTPUT)
    _report(result, root, time.perf_counter() - started)
    configured = OmegaConf.select(cfg, "data.source", default=None)
    if configured == "synthetic":
        print("note: params.yaml says data.source=synthetic; run `leukemia-cnn params data=kaggle` "
              "so that runs are tagged with the real source")

    if dvc_add:
        from leukemia_cnn.data.versioning import dvc_track

        dvc_file = root / "data.dvc" if out_dir.resolve() == raw_dir.resolve() else None
        result.dvc_file = dvc_track(root, out_dir, dvc_file)
        # Runs and model versions name the data they saw from this record (lineage.py).
        record_origin(result.dvc_file, origin)
        print(f"{shown(result.dvc_file, root)} versions {shown(out_dir, root)}; commit it with "
              f"`git add {shown(result.dvc_file, root)} {shown(out_dir.parent / '.gitignore', root)}`")
    return result
