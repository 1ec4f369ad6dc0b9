"""Stage ``split``: a stratified, seeded train/val/test table from the raw-data manifest.

Byte-identical files (same sha256) are one sample seen twice, so the split is drawn over
unique contents and every copy follows its content into the same split; otherwise a
duplicate in train and its copy in test would inflate test accuracy. Near-duplicates (a
re-encoded, resized or brightened copy: perceptual hashes at most
``split.near_duplicate_max_distance`` bits apart) are grouped the same way, so that the
``validate_splits`` suite, which fails on a near-duplicate in two splits, finds none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import train_test_split

from leukemia_cnn.config import SPLITS, check_section
from leukemia_cnn.config_schema import Config
from leukemia_cnn.data.splitbounds import suite_failures
from leukemia_cnn.errors import DataError
from leukemia_cnn.fileio import write_csv, write_json

# Rows of perceptual hashes compared at once when grouping near-duplicates (memory: chunk x n).
NEAR_DUPLICATE_CHUNK = 1024
# Seeds tried (split.seed, +1, ...) for a table that the validate_splits suite accepts: groups
# of copies stay in one split, so on a small set one draw can miss the size or share bounds.
MAX_DRAWS = 200
MANIFEST_COLUMNS = ("path", "class", "sha256")


def min_images_per_class(train: float, val: float, test: float) -> int:
    """Fewest unique images a class needs so that each split of the fractions ``train, val,
    test`` can receive at least one: ``ceil(1 / smallest fraction)``, and at least 3."""
    return max(3, math.ceil(1.0 / min(train, val, test) - 1e-9))


def _unique_contents(manifest: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """One row per distinct sha256 with its class; raise on label conflicts or unknown classes."""
    missing = [c for c in MANIFEST_COLUMNS if c not in manifest.columns]
    if missing:
        raise DataError(f"manifest lacks column(s) {missing} (has {list(manifest.columns)}); "
                        "rewrite it with `dvc repro validate_raw`")
    if manifest.empty:
        raise DataError("manifest lists no images; put images in data/raw/<Class>/ and run "
                        "`dvc repro validate_raw`")
    if "decodable" in manifest.columns:
        # CSV round trips may leave "True"/"False" strings instead of booleans.
        ok = manifest["decodable"].astype(str).str.strip().str.lower().isin(["true", "1"])
        broken = manifest.loc[~ok, "path"].tolist()
        if broken:
            raise DataError(f"manifest marks {len(broken)} image(s) as not decodable, e.g. "
                            f"{broken[:5]}; remove or replace them in data/raw and rerun "
                            "`dvc repro validate_raw`")
    unhashed = manifest.loc[manifest["sha256"].fillna("").astype(str).str.strip() == "", "path"]
    if len(unhashed):
        raise DataError(f"manifest has no sha256 for {len(unhashed)} image(s), e.g. "
                        f"{unhashed.tolist()[:5]}; rerun `dvc repro validate_raw`")
    unknown = sorted(set(manifest["class"]) - set(classes))
    if unknown:
        raise DataError(f"manifest has classes {unknown} that are not in config key "
                        f"`data.classes` = {list(classes)}; add them to conf/data/ or remove "
                        "those folders from data/raw")

    labels_per_hash = manifest.groupby("sha256")["class"].nunique()
    conflicts = labels_per_hash[labels_per_hash > 1].index
    if len(conflicts):
        rows = manifest[manifest["sha256"].isin(conflicts)].sort_values(["sha256", "path"])
        examples = [f"{', '.join(group['path'])} ({', '.join(sorted(set(group['class'])))})"
                    for _, group in rows.groupby("sha256", sort=True)]
        raise DataError(f"{len(conflicts)} image content(s) appear under more than one class "
                        f"(label conflict): {'; '.join(examples[:5])}; keep each image in one "
                        "class folder of data/raw and rerun `dvc repro validate_raw`")
    columns = ["class", "phash"] if "phash" in manifest.columns else ["class"]
    return manifest.groupby("sha256", sort=True)[columns].first().reset_index()


def near_duplicate_groups(contents: pd.DataFrame, max_distance: int | None) -> np.ndarray:
    """A group id per row of ``contents`` (one row per sha256): rows whose perceptual hashes
    are at most ``max_distance`` bits apart, directly or through a chain, share a group.

    The id is the row number of the group's first member, so with no near-duplicates every
    row is its own group (and the split is the same as one drawn over sha256 alone). Without
    a ``phash`` column (a manifest from before it existed) or with ``max_distance`` None,
    every row is its own group.
    """
    n = len(contents)
    if max_distance is None or "phash" not in contents.columns or n < 2:
        return np.arange(n)
    text = contents["phash"].fillna("").astype(str).str.strip()
    known = np.flatnonzero(text.str.fullmatch(r"[0-9a-fA-F]{16}").to_numpy())
    hashes = np.array([int(text.iloc[i], 16) for i in known], dtype=np.uint64)
    rows, cols = [np.empty(0, dtype=np.intp)], [np.empty(0, dtype=np.intp)]
    for start in range(0, len(known), NEAR_DUPLICATE_CHUNK):
        block = hashes[start:start + NEAR_DUPLICATE_CHUNK]
        a, b = np.nonzero(np.bitwise_count(block[:, None] ^ hashes[None, :]) <= max_distance)
        rows.append(known[start + a])
        cols.append(known[b])
    edges = (np.concatenate(rows), np.concatenate(cols))
    graph = coo_array((np.ones(len(edges[0]), dtype=bool), edges), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    first_row = np.unique(component, return_index=True)[1]  # each component's first row
    return first_row[component]


def split_table(manifest: pd.DataFrame, classes: Sequence[str], train: float, val: float,
                test: float, seed: int, near_duplicate_max_distance: int | None = None,
                tolerances: tuple[float, float] | None = None) -> pd.DataFrame:
    """Assign every image of ``manifest`` to train, val or test, stratified by class, drawn
    over groups of contents (see the module) so that copies always share a split.

    Parameters
    ----------
    manifest : pandas.DataFrame
        At least the columns ``path``, ``class`` and ``sha256`` (one row per file); an
        optional boolean ``decodable`` column must be all true.
    classes : sequence of str
        Class names; ``label`` is the index of a row's class in this sequence.
    train, val, test, seed : float, float, float, int
        Fractions of the unique images per split (summing to 1); scikit-learn's seed.
    near_duplicate_max_distance : int, optional
        Perceptual hashes at most this many bits apart are one group; None groups
        byte-identical files only. A mixed-class group is stratified by its most common
        class and counted in ``table.attrs``.
    tolerances : (float, float), optional
        ``validation.split_size_tolerance`` and ``class_share_tolerance``: draw with ``seed``,
        ``seed + 1``, ... (at most ``MAX_DRAWS``) until the table passes the validate_splits
        size and share checks; ``table.attrs["draw"]`` says which. None: one draw.

    Returns
    -------
    pandas.DataFrame
        Columns ``path, class, label, sha256, split``, ordered by split (train, val, test)
        then path. The same manifest (in any row order) and seed give the same table.

    Raises
    ------
    ConfigError
        Fractions outside (0, 1) or not summing to 1.
    DataError
        A missing column, an undecodable image, an unknown class, one content under two
        classes, or too few unique images in a class to stratify.
    """
    classes = list(classes)  # the knobs' types and ranges are the schema's:
    check_section("split", {"train": train, "val": val, "test": test, "seed": seed,
                            "near_duplicate_max_distance": near_duplicate_max_distance})
    contents = _unique_contents(manifest, classes)
    contents["group"] = near_duplicate_groups(contents, near_duplicate_max_distance)
    groups = _stratified_groups(contents, classes)
    _require_enough_per_class(groups, classes, train, val, test)

    ratios = {"train": train, "val": val, "test": test}
    for draw in range(MAX_DRAWS if tolerances else 1):
        table = _draw(manifest, contents, groups, classes, ratios, (seed + draw) % 2**32)
        problems = suite_failures(table, classes, ratios, *tolerances) if tolerances else []
        if not problems:
            break
    else:
        raise DataError(no_acceptable_split(table, groups, ratios, tolerances, problems))
    table.attrs["draw"] = draw
    table.attrs["near_duplicate_groups"] = _group_record(manifest, contents, groups,
                                                         near_duplicate_max_distance)
    return table


def _stratified_groups(contents: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """One row per content group: ``group, class`` (the most common class, the first in
    ``classes`` on a tie), ``n_classes`` and ``size``."""
    rank = {c: i for i, c in enumerate(classes)}
    groups = (contents.assign(rank=contents["class"].map(rank))
              .groupby("group", sort=True)
              .agg(rank=("rank", lambda r: r.value_counts().sort_index(kind="stable").idxmax()),
                   n_classes=("class", "nunique"), size=("class", "size")))
    groups["class"] = [classes[int(r)] for r in groups["rank"]]
    return groups.reset_index()[["group", "class", "n_classes", "size"]]


def _require_enough_per_class(groups: pd.DataFrame, classes: list[str], train: float,
                              val: float, test: float) -> None:
    """Raise DataError when a class has too few distinct groups to stratify the split."""
    needed = min_images_per_class(train, val, test)
    per_class = groups["class"].value_counts()
    too_few = {c: int(per_class.get(c, 0)) for c in classes if per_class.get(c, 0) < needed}
    if too_few:
        detail = ", ".join(f"{c}: {n}" for c, n in too_few.items())
        raise DataError(f"too few unique images to stratify a {train:g}/{val:g}/{test:g} split "
                        f"({detail}); each class in `data.classes` needs at least {needed} "
                        "distinct images (duplicates and near-duplicates count once); add "
                        "images to data/raw or drop the class from `data.classes`")


def _group_record(manifest: pd.DataFrame, contents: pd.DataFrame, groups: pd.DataFrame,
                  max_distance: int | None) -> dict:
    """``table.attrs["near_duplicate_groups"]``: how many contents were joined, and up to five
    groups whose files carry different classes."""
    joined = groups[groups["size"] > 1]
    return {
        "max_distance": max_distance,
        "n_groups": int(len(joined)),
        "n_contents_in_groups": int(joined["size"].sum()),
        "n_mixed_class_groups": int((joined["n_classes"] > 1).sum()),
        "mixed_class_examples": [
            sorted(manifest.loc[manifest["sha256"].isin(
                contents.loc[contents["group"] == g, "sha256"]), "path"].tolist())
            for g in joined.loc[joined["n_classes"] > 1, "group"].head(5)],
    }


def _draw(manifest: pd.DataFrame, contents: pd.DataFrame, groups: pd.DataFrame,
          classes: list[str], ratios: Mapping[str, float], random_state: int) -> pd.DataFrame:
    """One stratified draw of the groups (train vs rest, then val vs test), one row per file."""
    train, val, test = (ratios[name] for name in SPLITS)
    try:
        train_groups, rest = train_test_split(
            groups, train_size=train, stratify=groups["class"], random_state=random_state)
        val_groups, test_groups = train_test_split(
            rest, test_size=test / (val + test), stratify=rest["class"],
            random_state=random_state)
    except ValueError as exc:  # sklearn's own stratification limits, e.g. many tiny classes
        raise DataError(f"could not stratify {len(groups)} unique images over "
                        f"{len(classes)} classes into {train:g}/{val:g}/{test:g}: {exc}; "
                        "add images to the smallest classes") from exc
    group_split = pd.concat([
        frame[["group"]].assign(split=name)
        for name, frame in zip(SPLITS, (train_groups, val_groups, test_groups), strict=True)
    ])
    assignment = contents[["sha256", "group"]].merge(group_split, on="group")[["sha256", "split"]]
    table = manifest[["path", "class", "sha256"]].merge(assignment, on="sha256", how="left")
    table["label"] = table["class"].map({c: i for i, c in enumerate(classes)}).astype("int64")
    table["split"] = pd.Categorical(table["split"], categories=list(SPLITS), ordered=True)
    table = table.sort_values(["split", "path"], kind="stable").reset_index(drop=True)
    table["split"] = table["split"].astype(str)
    return table[["path", "class", "label", "sha256", "split"]]


def no_acceptable_split(table: pd.DataFrame, groups: pd.DataFrame, ratios: Mapping[str, float],
                        tolerances: tuple[float, float], problems: list[str]) -> str:
    """Why no draw passed, and the knobs that can change that."""
    ratio = "/".join(f"{ratios[name]:g}" for name in SPLITS)
    return (f"no stratified {ratio} split of {len(table)} images ({table['sha256'].nunique()} "
            f"distinct contents in {len(groups)} groups of identical or near-duplicate files, "
            f"each kept in one split) passes the validate_splits checks in {MAX_DRAWS} draws "
            f"(split.seed and the next ones), e.g. {problems[0]}. Groups of copies are too "
            f"large for a set this small: add distinct images, remove copies from data/raw, or "
            f"widen validation.split_size_tolerance ({tolerances[0]:g}) or "
            f"validation.class_share_tolerance ({tolerances[1]:g})")


def split_summary(table: pd.DataFrame, classes: Sequence[str]) -> dict:
    """The stage's DVC metrics of a :func:`split_table`: ``n_images``, ``n_unique``,
    ``n_duplicates`` (files beyond the first copy of a content), and ``counts``,
    ``fractions``, ``per_class`` (``classes`` in label order) keyed by split."""
    total = len(table)
    counts = {s: int((table["split"] == s).sum()) for s in SPLITS}
    per_class = {
        s: {c: int(((table["split"] == s) & (table["class"] == c)).sum()) for c in classes}
        for s in SPLITS
    }
    n_unique = int(table["sha256"].nunique())
    return {
        "n_images": total,
        "n_unique": n_unique,
        "n_duplicates": total - n_unique,
        "counts": counts,
        "fractions": {s: round(counts[s] / total, 4) if total else 0.0 for s in SPLITS},
        "per_class": per_class,
    }


def read_manifest(path: Path) -> pd.DataFrame:
    """Read the manifest written by ``validate_raw`` or raise DataError saying how to make it."""
    if not path.is_file():
        raise DataError(f"manifest {path} not found; run `dvc repro validate_raw` "
                        "(or `leukemia-cnn validate-raw`) first")
    try:
        return pd.read_csv(path, dtype={"path": str, "class": str, "sha256": str,
                                        "phash": str}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"manifest {path} is not a readable CSV ({exc}); rerun "
                        "`dvc repro validate_raw`") from exc


def run(cfg: Config, root: Path) -> dict:
    """Run the stage: manifest -> ``paths.splits`` CSV and ``<reports_dir>/split.json``
    (config paths relative to ``root``); return the summary written plus the output paths."""
    classes = list(cfg.data.classes)
    manifest = read_manifest(root / cfg.paths.manifest)
    table = split_table(manifest, classes, train=cfg.split.train, val=cfg.split.val,
                        test=cfg.split.test, seed=cfg.split.seed,
                        near_duplicate_max_distance=cfg.split.near_duplicate_max_distance,
                        tolerances=(cfg.validation.split_size_tolerance,
                                    cfg.validation.class_share_tolerance))

    splits_path = write_csv(root / cfg.paths.splits, table)

    grouped = table.attrs["near_duplicate_groups"]
    summary = {**split_summary(table, classes), "near_duplicate_groups": grouped,
               "draw": table.attrs["draw"]}
    if table.attrs["draw"]:
        print(f"split: seed {cfg.split.seed} gave a table outside the validate_splits bounds; "
              f"used seed {cfg.split.seed + table.attrs['draw']} (draw {table.attrs['draw']})")
    if grouped["n_groups"]:
        print(f"split: {grouped['n_contents_in_groups']} images in {grouped['n_groups']} "
              f"near-duplicate group(s) (perceptual hashes <= {grouped['max_distance']} bits "
              "apart) kept in one split each")
    if grouped["n_mixed_class_groups"]:
        print(f"split: warning: {grouped['n_mixed_class_groups']} near-duplicate group(s) span "
              f"two classes, e.g. {grouped['mixed_class_examples'][0]}; check their labels")
    report_path = write_json(root / cfg.paths.reports_dir / "split.json", summary)
    return {**summary, "splits": str(splits_path), "report": str(report_path)}
