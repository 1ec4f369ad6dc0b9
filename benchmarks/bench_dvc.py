"""DVC benchmark: a no-op ``dvc repro`` and what a changed training knob re-runs.

In a temporary git + DVC copy of the project with a tiny configuration (synthetic data at
``--scale``, 64x64 images, a small CNN, few epochs; written into the copy's conf/ like the
tests' ``pipeline`` fixture), it runs the full ``dvc repro``, then ``dvc repro`` again with
nothing changed (timed, repeated), then changes ``train.epochs`` (``leukemia-cnn params``
rewrites params.yaml) and shows what ``dvc status`` and ``dvc repro --dry`` list and which
stages the real ``dvc repro`` runs, against the stages downstream of the knob in dvc.yaml
(``--dry`` cannot know that a stage's outputs will change, so it lists only the stages whose
own deps or params changed).

Baselines in the same run: ``dvc --version`` (the CLI's start-up) and the full ``dvc repro``.
Targets: no-op ``dvc repro`` < 5 s; the knob re-runs exactly the stages downstream of it.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path

import benchlib
import yaml

TINY_CONF = {
    "preprocess": {"image_size": 64},
    "features": {"pca": {"n_components": 16}},
    "model": {"filters": [16, 32, 32], "kernel_sizes": [5, 3, 3], "dense_units": 64},
    "train": {"epochs": 2, "batch_size": 16, "verbose": 0},
}
KNOB = "train.epochs"
RAN = re.compile(r"Running stage '([^']+)'")


def timed_sh(command: list[str], cwd: Path) -> tuple[float, str]:
    started = time.perf_counter()
    result = benchlib.sh(command, cwd)
    return time.perf_counter() - started, result.stdout + result.stderr


def downstream(project: Path, knob: str) -> list[str]:
    """Stages whose params cover ``knob``, plus every stage that depends on their outputs."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]

    def paths(entries) -> set[str]:
        return {next(iter(e)) if isinstance(e, dict) else e for e in entries or []}

    def covers(param: str) -> bool:
        return knob == param or knob.startswith(param + ".")

    hit = [name for name, spec in stages.items()
           if any(covers(p) for p in paths(spec.get("params")))]
    # A stage that tracks the whole params file (check_config) re-runs for any knob, but its
    # output (the check's marker) does not depend on the values: nothing re-runs after it.
    checks = [name for name, spec in stages.items()
              if any(isinstance(p, dict) and not next(iter(p.values()))
                     for p in spec.get("params") or [])]
    changed = set(hit)
    grew = True
    while grew:
        grew = False
        produced = set().union(*(paths(stages[s].get("outs")) | paths(stages[s].get("metrics"))
                                 | paths(stages[s].get("plots")) for s in changed))
        for name, spec in stages.items():
            if name not in changed and paths(spec.get("deps")) & produced:
                changed.add(name)
                grew = True
    return [name for name in stages if name in changed or name in checks]


def make_repo(dest: Path, scale: float) -> Path:
    repo = benchlib.copy_project(dest)
    config_path = repo / "conf" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config.update({**TINY_CONF, "data": {"synth": {"scale": scale}}})
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    for command in (["git", "init", "-q"], ["git", "config", "user.email", "bench@example.com"],
                    ["git", "config", "user.name", "bench"], ["leukemia-cnn", "params"],
                    ["leukemia-cnn", "data", "synth"], ["git", "add", "-A"],
                    ["git", "commit", "-qm", "tiny project"]):
        benchlib.sh(command, repo)
    return repo


def main(argv: list[str] | None = None) -> int:
    cli = benchlib.parser(__doc__, workspace=False)
    cli.add_argument("--scale", type=float, default=0.05,
                     help="synthetic dataset size of the tiny project")
    cli.add_argument("--repeats", type=int, default=3, help="timed no-op `dvc repro` runs")
    args = cli.parse_args(argv)
    bench = benchlib.Bench("dvc", "no-op `dvc repro`; a training knob re-runs only its stages")
    with tempfile.TemporaryDirectory(prefix="leukemia-bench-dvc-") as tmp:
        repo = make_repo(Path(tmp) / "repo", args.scale)
        n_images = sum(1 for _ in (repo / "data" / "raw").rglob("*.jpg"))
        bench.say(f"tiny project: {n_images} synthetic images, overrides {json.dumps(TINY_CONF)}")
        version_s = benchlib.median(timed_sh(["dvc", "--version"], repo)[0] for _ in range(3))
        full_s, output = timed_sh(["dvc", "repro"], repo)
        bench.say(f"full `dvc repro`: {full_s:.1f} s, ran {RAN.findall(output)}")
        benchlib.sh(["git", "add", "-A"], repo)
        benchlib.sh(["git", "commit", "-qm", "pipeline outputs"], repo)

        noop = []
        for _ in range(args.repeats):
            seconds, output = timed_sh(["dvc", "repro"], repo)
            if RAN.findall(output):
                raise RuntimeError(f"a second `dvc repro` re-ran {RAN.findall(output)}:\n{output}")
            noop.append(seconds)
        status_s, status_out = timed_sh(["dvc", "status"], repo)
        noop_s = benchlib.median(noop)
        bench.say(f"no-op `dvc repro` (nothing ran; last output: "
                  f"{output.strip().splitlines()[-1]!r}): runs {', '.join(f'{s:.2f}' for s in noop)} "
                  f"s, median {noop_s:.2f} s; `dvc status` {status_s:.2f} s "
                  f"({status_out.strip().splitlines()[-1]!r}); `dvc --version` {version_s:.2f} s")
        bench.say(f"ratios: no-op repro / `dvc --version` start-up = {noop_s / version_s:.2f}; "
                  f"no-op repro / full repro = {noop_s / full_s:.3f}")

        epochs = int(yaml.safe_load((repo / "params.yaml").read_text())["train"]["epochs"])
        benchlib.sh(["leukemia-cnn", "params", f"{KNOB}={epochs + 1}"], repo)
        expected = downstream(repo, KNOB)
        status = json.loads(benchlib.sh(["dvc", "status", "--json"], repo).stdout or "{}")
        dry = RAN.findall(timed_sh(["dvc", "repro", "--dry"], repo)[1])
        rerun_s, output = timed_sh(["dvc", "repro"], repo)
        ran = RAN.findall(output)
        bench.say(f"changed {KNOB} {epochs} -> {epochs + 1} (params.yaml via `leukemia-cnn params`)")
        bench.say(f"  `dvc status` lists as changed: {sorted(status)}")
        bench.say(f"  `dvc repro --dry` would run:   {dry}  (a dry run cannot know that the "
                  "stage's outputs will change, so it lists only the stages changed directly)")
        bench.say(f"  `dvc repro` ran:               {ran} in {rerun_s:.1f} s "
                  f"({rerun_s / full_s:.2f} of the full repro)")
        bench.say(f"  downstream of {KNOB} in dvc.yaml: {expected}")
        bench.figure("noop_seconds", noop_s)
        bench.figure("full_seconds", full_s)
        bench.check("no-op `dvc repro` (median)", noop_s, "<=", 5.0, "s")
        bench.check(f"`dvc repro` after changing {KNOB} ran exactly the downstream stages "
                    "(1 = yes)", float(ran == expected), ">=", 1.0,
                    fmt="{:.0f}")
    bench.finish(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
