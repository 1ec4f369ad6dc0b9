"""``leukemia-cnn data synth``: the built-in synthetic dataset, smear-field JPEGs in the Kaggle
layout (``<Class>/WBC-...-001.jpg``), painted by :mod:`leukemia_cnn.data.smear`.

Each image's random stream comes from ``SeedSequence([seed, class index, image index])``:
the output is byte-identical for a seed whatever the number of workers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from leukemia_cnn.config import check_section
from leukemia_cnn.config_schema import Config
from leukemia_cnn.data.imaging import IMAGE_EXTENSIONS
from leukemia_cnn.data.rawtree import (
    RawTarget,
    check_raw_output,
    commit_hint,
    dvc_add_raw_tree,
    raw_output,
    write_raw_tree,
)
from leukemia_cnn.data.smear import LADDER, generate_image, image_rng
from leukemia_cnn.errors import ConfigError
from leukemia_cnn.fileio import shown

# Kaggle file-name prefix of each class: WBC-Benign-001.jpg, WBC-Malignant-Early-001.jpg, ...
FILE_PREFIXES = {
    "Benign": "WBC-Benign",
    "Early": "WBC-Malignant-Early",
    "Pre": "WBC-Malignant-Pre",
    "Pro": "WBC-Malignant-Pro",
}


def file_name(class_name: str, number: int, total: int) -> str:
    """Kaggle-style name: ``WBC-Malignant-Pre-007.jpg`` (1-based, at least three digits)."""
    prefix = FILE_PREFIXES.get(class_name, f"WBC-{class_name}")
    return f"{prefix}-{number:0{max(3, len(str(total)))}d}.jpg"


def class_sizes(class_counts: Mapping[str, int], classes: Sequence[str],
                scale: float) -> dict[str, int]:
    """Images per class: ``round(class_count * scale)``, at least 1 (the values as the config
    schema checked them: a count for every class, scale > 0)."""
    return {name: max(1, round(class_counts[name] * scale)) for name in classes}


def _write_batch(jobs: Sequence[tuple[int, str, int, str]], seed: int, image_size: int,
                 jpeg_quality: int) -> int:
    for class_index, class_name, image_index, path in jobs:
        image = generate_image(image_rng(seed, class_index, image_index), class_name, image_size)
        image.save(path, "JPEG", quality=jpeg_quality)
    return len(jobs)


def generate(out_dir: str | Path, classes: Sequence[str], counts: Mapping[str, int], seed: int,
             image_size: int = 224, jpeg_quality: int = 92, progress: bool = True,
             n_jobs: int = 2) -> list[Path]:
    """Write ``counts[c]`` images of each class ``c`` to ``out_dir/<c>/`` (created if missing,
    same-named files overwritten) and return their paths.

    Image ``i`` of the ``k``-th of ``classes`` is painted from ``SeedSequence([seed, k, i])``
    at ``image_size`` pixels a side and saved as a JPEG of ``jpeg_quality`` (1-95), by
    ``n_jobs`` worker processes, which do not change the output.
    """
    from tqdm import tqdm

    for name in classes:
        if name not in LADDER:
            raise ConfigError(f"config key `data.classes`: the synthetic generator has no class "
                              f"{name!r}; allowed: {', '.join(LADDER)}")
    out_dir = Path(out_dir)
    jobs = []
    for class_index, name in enumerate(classes):
        (out_dir / name).mkdir(parents=True, exist_ok=True)
        total = int(counts[name])
        for image_index in range(total):
            path = out_dir / name / file_name(name, image_index + 1, total)
            jobs.append((class_index, name, image_index, str(path)))

    batch = 32
    chunks = [jobs[i:i + batch] for i in range(0, len(jobs), batch)]
    with tqdm(total=len(jobs), unit="img", desc="synth", disable=not progress) as bar:
        if n_jobs > 1 and len(chunks) > 2:
            from joblib import Parallel, delayed

            runner = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
            for done in runner(delayed(_write_batch)(chunk, seed, image_size, jpeg_quality)
                               for chunk in chunks):
                bar.update(done)
        else:
            for chunk in chunks:
                bar.update(_write_batch(chunk, seed, image_size, jpeg_quality))
    return [Path(job[3]) for job in jobs]


def run(cfg: Config, root: Path, scale: float | None = None, seed: int | None = None,
        output: str | None = None, if_empty: bool = False, dvc_add: bool = True,
        discard_local: bool = False) -> None:
    """``leukemia-cnn data synth``: write the synthetic set, swap it in and version it with DVC
    (:func:`leukemia_cnn.data.rawtree.write_raw_tree`); files of the previous tree that no record
    holds are refused, or moved aside with ``discard_local``."""
    # --scale and --seed override data.synth.scale/seed; the config schema checks the result.
    data = cfg.data.model_dump()
    # Under data=kaggle the schema says `data.synth` belongs to data=synthetic.
    data.setdefault("synth", {}).update(
        {k: v for k, v in (("scale", scale), ("seed", seed)) if v is not None})
    data = check_section("data", data)
    classes, synth = data.classes, data.synth
    raw_dir = root / cfg.paths.raw_dir
    sizes = class_sizes(synth.class_counts, classes, synth.scale)
    given = raw_output(output, raw_dir)
    if if_empty and given.is_dir() and any(  # nothing will be written
            p.suffix.lower() in IMAGE_EXTENSIONS for p in given.rglob("*") if p.is_file()):
        print(f"{shown(given, root)} already holds images; left untouched (--if-empty)")
        return
    out_dir = check_raw_output(given, root, label=output)

    target = RawTarget.of(root, out_dir, raw_dir, discard_local, dvc_add)
    target.check_local_files()
    versioned: list[Path] = []

    def version() -> None:  # while the previous tree waits aside
        versioned.append(dvc_add_raw_tree(target, None))

    started = time.perf_counter()
    write_raw_tree(target, lambda staging: generate(staging, classes, sizes, synth.seed,
                                                     synth.image_size, synth.jpeg_quality),
                   version if dvc_add else None)
    seconds = time.perf_counter() - started
    per_class = ", ".join(f"{name} {count}" for name, count in sizes.items())
    print(f"wrote {sum(sizes.values()):,} synthetic images (seed {synth.seed}, scale "
          f"{synth.scale}) to {shown(out_dir, root)} in {seconds:.1f} s: {per_class}")
    if versioned:
        print(commit_hint(root, versioned[0], out_dir))
