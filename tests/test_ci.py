"""The CI workflow: valid YAML that runs every validation stage and uploads every report."""

from __future__ import annotations

import yaml

from helpers import REPO_ROOT


def test_ci_runs_the_validation_stages_and_uploads_their_reports():
    workflow = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "ci.yml").read_text())
    steps = workflow["jobs"]["test"]["steps"]
    commands = "\n".join(step.get("run", "") for step in steps)
    dvc_yaml = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    # `dvc repro validate_features` runs it and every stage it depends on
    assert "dvc repro validate_features" in commands
    chain = ["validate_raw", "split", "validate_splits", "preprocess", "features"]
    assert all(stage in dvc_yaml for stage in chain)
    assert "reports/validate_splits.json" in dvc_yaml["preprocess"]["deps"]
    upload = next(step for step in steps if step.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()"
    for name in ("validate_raw", "validate_splits", "validate_features"):
        assert f"reports/{name}.md" in upload["with"]["path"]
        assert f"reports/{name}.json" in upload["with"]["path"]


def test_readme_commands_are_the_ones_ci_and_make_run():
    readme = (REPO_ROOT / "README.md").read_text()
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    makefile = (REPO_ROOT / "Makefile").read_text()
    for command in ("make run", "make test", "make test-slow"):
        assert f"\n{command}" in readme, command
        assert f"\n{command.split()[1]}:" in makefile, command
    assert "\nmake test\n" in ci and "\nmake test-slow\n" in ci


def test_the_readme_fits_a_screen_or_two():
    """A new user's first page: what it is, the two commands, where to look next, links; the
    reference lives in docs/."""
    assert len((REPO_ROOT / "README.md").read_text().splitlines()) <= 120


def test_every_relative_link_of_the_readme_and_docs_resolves():
    from markdown_it import MarkdownIt

    parser = MarkdownIt()
    broken = []
    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]
    for page in pages:
        for token in parser.parse(page.read_text()):
            for child in token.children or []:
                href = child.attrGet("href") if child.type == "link_open" else None
                if not href or "://" in href or href.startswith(("#", "mailto:")):
                    continue
                if not (page.parent / href.split("#")[0]).exists():
                    broken.append(f"{page.relative_to(REPO_ROOT)}: {href}")
    assert not broken, broken


def test_no_file_holds_a_merge_conflict_marker():
    import subprocess

    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    marked = []
    for name in filter(None, listed):
        path = REPO_ROOT / name
        if not path.is_file() or path.suffix in (".png", ".jpg", ".npz", ".db"):
            continue
        text = path.read_bytes().decode("utf-8", errors="ignore")
        if any(line.startswith(("<<<<<<< ", ">>>>>>> ")) for line in text.splitlines()):
            marked.append(name)
    assert not marked, f"merge conflict markers in {marked}"
