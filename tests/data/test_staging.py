"""Issue 31, item 6: overrides that DVC's Hydra integration drops are not silent.
`leukemia-cnn params train.epochs=5`, committed, then `dvc exp run -S seed=7`: DVC recomposes
conf/ with the -S values only, so the experiment would train 15 epochs. `params` says so when
it writes the override, and the first stage (check_config) names the dropped key under
`dvc exp run` (DVC has no hook before an experiment)."""

from __future__ import annotations

import yaml

from helpers import copy_project, sh


def committed_override(tmp_path):
    repo = copy_project(tmp_path / "repo")
    for args in (("git", "init", "-q"), ("git", "config", "user.email", "ci@example.com"),
                 ("git", "config", "user.name", "ci")):
        sh(*args, cwd=repo)
    written = sh("leukemia-cnn", "params", "train.epochs=5", cwd=repo)
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "five epochs", cwd=repo)
    return repo, written


def test_params_says_dvc_exp_run_would_drop_the_override(tmp_path):
    _, written = committed_override(tmp_path)
    assert "params.yaml holds train.epochs=5, which conf/ does not" in written.stderr
    assert "`dvc exp run -S train.epochs=5`" in written.stderr


def test_check_config_names_the_override_dvc_exp_run_dropped(tmp_path):
    repo, _ = committed_override(tmp_path)

    ran = sh("dvc", "exp", "run", "-S", "seed=7", "check_config", cwd=repo)

    said = ran.stdout + ran.stderr
    assert "dropped 1 override(s) the baseline commit had: train.epochs=5 (now 15)" in said
    assert "dvc exp run -S train.epochs=5" in said
    assert yaml.safe_load((repo / "params.yaml").read_text())["train"]["epochs"] == 15


def test_an_override_passed_with_s_is_kept_and_not_reported(tmp_path):
    repo, _ = committed_override(tmp_path)

    ran = sh("dvc", "exp", "run", "-S", "seed=7", "-S", "train.epochs=5", "check_config",
             cwd=repo)

    assert "dropped" not in ran.stdout + ran.stderr
    assert yaml.safe_load((repo / "params.yaml").read_text())["train"]["epochs"] == 5
