"""Issue 31, item 8 (the command-hygiene part): a configured path that git, dvc or a shell
would read as an option is refused; every git/dvc call the project makes ends its options
(`--`) before a path; hints that print a shell command quote the paths in it."""

from __future__ import annotations

import ast
import subprocess

import yaml

from helpers import REPO_ROOT
from helpers.disks import dvc_project, git
from helpers.guard import one_line_error, run

SOURCES = sorted((REPO_ROOT / "src" / "leukemia_cnn").rglob("*.py"))


def test_a_raw_dir_named_like_an_option_is_refused_and_writes_nothing(tmp_path, monkeypatch,
                                                                     capfd):
    project = dvc_project(tmp_path / "project")
    monkeypatch.chdir(project)
    before = sorted(p.name for p in project.iterdir())

    code, err = run(["params", "paths.raw_dir='-rf'"], capfd)

    assert one_line_error(code, err, "params")
    assert "config key `paths.raw_dir` = '-rf' has a part that starts with '-'" in err
    # a params file edited by hand: refused when loaded, before anything is written
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["paths"]["raw_dir"] = "data/-rf"
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    code, err = run(["data", "synth", "--scale", "0.01"], capfd)
    assert one_line_error(code, err, "data synth") and "`paths.raw_dir` = 'data/-rf'" in err
    assert sorted(p.name for p in project.iterdir()) == before
    assert not (project / "data").exists()


def test_an_output_named_like_an_option_is_versioned_by_dvc(tmp_path, monkeypatch, capfd):
    """`dvc add -- -new`: the folder is a path, not an option (was: `dvc add -new` failed)."""
    project = dvc_project(tmp_path / "project")
    monkeypatch.chdir(project)

    code, err = run(["data", "synth", "--scale", "0.01", "--output=-new"], capfd)

    assert code == 0, err
    assert yaml.safe_load((project / "-new.dvc").read_text())["outs"][0]["path"] == "-new"


def test_the_printed_git_add_hint_runs_nothing_when_pasted(tmp_path, monkeypatch, capfd):
    project = dvc_project(tmp_path / "project")
    monkeypatch.chdir(project)
    assert run(["params", "data.synth.scale=0.01", "paths.raw_dir='$(touch pwned)/raw'"],
               capfd)[0] == 0

    from leukemia_cnn.cli.main import main as cli_main

    assert cli_main(["data", "synth"]) == 0
    hint = capfd.readouterr().out.split("commit it with `", 1)[1].split("`", 1)[0]
    subprocess.run(["sh", "-c", hint], cwd=project, check=True)  # as a user pastes it

    assert not (project / "pwned").exists()
    assert {"data.dvc", "$(touch pwned)/.gitignore"} <= set(
        git("diff", "--cached", "--name-only", cwd=project).splitlines())


DVC_SUBCOMMANDS = {"add", "cache", "checkout", "commit", "config", "data", "exp", "fetch", "gc",
                   "init", "pull", "push", "remote", "repro", "status"}


def _calls(tree: ast.AST):
    """Every list literal that starts a git or dvc command: ``["git", ...]``, ``[sys.executable,
    "-m", "dvc", ...]``, or ``[*command, "add", ...]`` (``command = dvc_command()``); yields
    the node and the arguments after the program."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.List) or not node.elts:
            continue
        elts = node.elts
        named = [i for i, arg in enumerate(elts[:3])
                 if isinstance(arg, ast.Constant) and arg.value in ("git", "dvc")]
        if named:
            yield node, elts[named[0] + 1:]
        elif (isinstance(elts[0], ast.Starred) and len(elts) > 1
              and isinstance(elts[1], ast.Constant) and elts[1].value in DVC_SUBCOMMANDS):
            yield node, elts[1:]


def test_every_git_and_dvc_call_ends_its_options_before_a_path():
    """An argument computed at run time (a path) comes after `--` (or git's
    `--end-of-options` before a `rev:path`), so a path starting with `-` is never an option."""
    offenders = []
    for path in SOURCES:
        for node, args in _calls(ast.parse(path.read_text())):
            ends = [i for i, arg in enumerate(args) if isinstance(arg, ast.Constant)
                    and arg.value in ("--", "--end-of-options")]
            computed = [i for i, arg in enumerate(args) if not isinstance(arg, ast.Constant)]
            if computed and (not ends or ends[0] > computed[0]):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, offenders
