"""Planning ``leukemia-cnn data get``: which files of a source become which files of data/raw.

Nothing is read here: the plan maps the entries of a source (:mod:`leukemia_cnn.data.ingest.sources`)
to ``<Class>/<name>`` targets, finds the folder whose sub-folders are the classes (the Kaggle
``Original/`` or ``Segmented/`` variant) and lists what it leaves out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from leukemia_cnn.config import VARIANTS
from leukemia_cnn.data.imaging import OS_JUNK, SkippedFile, skip_reason
from leukemia_cnn.data.ingest.sources import Entry
from leukemia_cnn.errors import ConfigError, DataError

# Skipped files listed one by one on the terminal (all of them are in the returned result).
MAX_LISTED = 20


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
    classes : sequence of str
        ``data.classes``; folder names match them case-insensitively.
    variant : str or None
        ``data.variant``: the Kaggle sub-folder (Original or Segmented) when the source has them.
    skip_unknown : bool
        ``data.skip_unknown_classes``: skip folders that match no class (reported) instead of
        raising DataError.
    """
    skipped, images = _image_parts(entries, label)
    root = _class_root(images, classes, variant, label)
    prefix = "/".join(root) + "/" if root else ""
    copies, unknown, loose, ignored = _targets(images, root, classes, label)
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
                ignored=ignored)


def _image_parts(entries: Sequence[Entry],
                 label: str) -> tuple[dict[str, SkippedFile], list[list[str]]]:
    """The path parts of the image entries, and the entries skipped (junk, not images)."""
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
    return skipped, images


def _targets(images: list[list[str]], root: tuple[str, ...], classes: Sequence[str],
             label: str) -> tuple[dict[str, str], Counter[str], list[str], int]:
    """``<Class>/<name>`` target -> source name for the images under ``root``; the images of
    unknown folders (per folder), those directly under ``root``, and how many lie elsewhere."""
    by_lower = {name.lower(): name for name in classes}
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
    return copies, unknown, loose, ignored


def _files(count: int) -> str:
    return f"{count} file{'' if count == 1 else 's'}"

