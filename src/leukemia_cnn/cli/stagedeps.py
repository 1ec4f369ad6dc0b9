"""The ``src/`` deps of every ``dvc.yaml`` stage, derived from the code (``make deps``).

A stage lists as deps exactly the project modules its command runs: its module and every
``leukemia_cnn`` module that one imports, at any depth of the code (imports inside functions
too), read from the source with :mod:`ast` (nothing is imported). So editing a module re-runs
exactly the stages that run it, and editing a data maker (``data/synthetic.py``) re-runs none.
``python -m leukemia_cnn.cli.stagedeps --write`` rewrites those lines of ``dvc.yaml`` in place
(the other deps, comments and order stay); ``tests/test_architecture.py`` fails when they
differ from the code.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

from leukemia_cnn.cli.parser import STAGES

PACKAGE = Path(__file__).resolve().parents[1]
SOURCE_ROOT = PACKAGE.parent.parent  # the repository (src/ layout)
# What each stage runs: the stage's module (cli.parser.STAGES), except the first stage,
# `leukemia-cnn check-config`, which runs config.write_config_check, the paths.* rule and,
# under `dvc exp run`, data.staging (a refused value restored, dropped overrides named).
STAGE_CODE: dict[str, tuple[str, ...]] = {
    **{name.replace("-", "_"): (module,) for name, (module, _) in STAGES.items()},
    "check_config": ("leukemia_cnn.config", "leukemia_cnn.pathrules", "leukemia_cnn.data.staging"),
}


def module_file(name: str) -> Path | None:
    """The file of a dotted ``leukemia_cnn`` module name, or None when there is none."""
    base = PACKAGE.parent.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def project_imports(path: Path) -> set[str]:
    """Every ``leukemia_cnn`` module ``path`` imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("leukemia_cnn"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if module_file(candidate) else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("leukemia_cnn"))
    return {name for name in found if module_file(name)}


def closure(*names: str) -> set[str]:
    """``names`` and every module they import, transitively."""
    seen, todo = set(), list(names)
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(project_imports(module_file(current)))
    return seen


def stage_code_files(stage: str) -> list[str]:
    """The project files ``stage``'s command runs, relative to the repository, sorted."""
    return sorted(module_file(name).relative_to(SOURCE_ROOT).as_posix()
                  for name in closure(*STAGE_CODE[stage]))


def rewrite(text: str) -> str:
    """``dvc.yaml``'s text with each stage's ``src/`` deps replaced by :func:`stage_code_files`
    (written where the stage's first ``src/`` dep was)."""
    out: list[str] = []
    stage, written = None, False
    for line in text.splitlines(keepends=True):
        header = re.match(r"^  (\w+):\s*$", line)
        if header:
            stage, written = header.group(1), False
        dep = re.match(r"^(\s*)- (src/leukemia_cnn/\S+)\s*$", line)
        if dep and stage in STAGE_CODE:
            if not written:
                out += [f"{dep.group(1)}- {path}\n" for path in stage_code_files(stage)]
                written = True
            continue
        out.append(line)
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dvc-yaml", default=str(SOURCE_ROOT / "dvc.yaml"))
    parser.add_argument("--write", action="store_true",
                        help="rewrite the file in place (default: exit 1 when it differs)")
    args = parser.parse_args(argv)
    path = Path(args.dvc_yaml)
    current = path.read_text()
    wanted = rewrite(current)
    if wanted == current:
        print(f"{path}: every stage's src/ deps match the code")
        return 0
    if args.write:
        path.write_text(wanted)
        print(f"{path}: src/ deps rewritten from the code")
        return 0
    print(f"{path}: src/ deps differ from the code; run `make deps`", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
