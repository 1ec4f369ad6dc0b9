"""Issue 31, item 1: a user's own files in data/raw are never destroyed by `data get` or
`data synth`. A file that the last recorded version (data.dvc, with its object in DVC's cache)
does not hold (copied in, edited in place, its cached copy gone) is named and refused; with
--discard-local-changes it is first moved to data/raw.local-<time>/, which the message names."""

from __future__ import annotations

import yaml

from helpers.datasets import class_tree, image_bytes, tree_digest, write_file
from helpers.disks import dvc, dvc_project, git
from helpers.guard import one_line_error, run


def synth(project, capfd, *extra):
    return run(["data", "synth", "--scale", "0.01", *extra], capfd)


def test_data_synth_and_get_refuse_files_no_recorded_version_holds(tmp_path, monkeypatch,
                                                                     capfd):
    project = dvc_project(tmp_path / "project")
    monkeypatch.chdir(project)
    assert synth(project, capfd)[0] == 0
    git("add", "-A", cwd=project)
    git("commit", "-qm", "data", cwd=project)
    raw = project / "data" / "raw"
    write_file(raw / "Pro" / "mine.jpg", image_bytes(7))  # a user's own image
    edited = sorted((raw / "Benign").iterdir())[0]
    write_file(edited, image_bytes(8))  # edited in place
    before, recorded = tree_digest(project / "data"), (project / "data.dvc").read_text()
    source = class_tree(tmp_path / "source", per_class=3, seed=4)

    for argv in (["data", "synth", "--scale", "0.01", "--seed", "3"],
                 ["data", "get", "--source", str(source)]):
        code, err = run(argv, capfd)
        assert one_line_error(code, err, " ".join(argv[:2]))
        assert "Pro/mine.jpg (new)" in err and f"Benign/{edited.name} (edited)" in err
        assert "--discard-local-changes" in err and "nothing was changed" in err
        assert tree_digest(project / "data") == before
        assert (project / "data.dvc").read_text() == recorded


def test_discard_local_changes_moves_them_somewhere_the_message_names(tmp_path, monkeypatch,
                                                                       capfd):
    project = dvc_project(tmp_path / "project")
    monkeypatch.chdir(project)
    assert synth(project, capfd)[0] == 0
    raw = project / "data" / "raw"
    mine = write_file(raw / "Pro" / "mine.jpg", image_bytes(7))
    kept = mine.read_bytes()

    from leukemia_cnn.cli.main import main as cli_main

    code = cli_main(["data", "synth", "--scale", "0.01", "--seed", "3", "--discard-local-changes"])

    assert code == 0
    aside = sorted((project / "data").glob("raw.local-*"))
    assert len(aside) == 1 and (aside[0] / "Pro" / "mine.jpg").read_bytes() == kept
    assert f"to data/{aside[0].name}/ (recover them from there): Pro/mine.jpg (new)" in (
        capfd.readouterr().out)
    assert not (raw / "Pro" / "mine.jpg").exists()
    assert dvc("status", "--json", "data.dvc", cwd=project).stdout.strip() in ("{}", "")


def test_a_file_whose_cached_copy_is_gone_is_refused(tmp_path, monkeypatch, capfd):
    project = dvc_project(tmp_path / "project")
    monkeypatch.chdir(project)
    assert synth(project, capfd)[0] == 0
    listing = yaml.safe_load((project / "data.dvc").read_text())["outs"][0]["md5"]
    cache = project / ".dvc" / "cache" / "files" / "md5"
    entries = yaml.safe_load((cache / listing[:2] / listing[2:]).read_text())
    lost = entries[0]
    (cache / lost["md5"][:2] / lost["md5"][2:]).unlink()  # e.g. `dvc gc` or a cleaned cache

    code, err = synth(project, capfd, "--seed", "3")

    assert one_line_error(code, err, "data synth")
    assert f"{lost['relpath']} (not in DVC's cache)" in err


def test_a_folder_the_last_run_wrote_is_replaced_but_a_users_file_in_it_is_not(
        tmp_path, monkeypatch, capfd):
    """Without DVC (--no-dvc-add) the listing the last `data` run kept is the record."""
    project = dvc_project(tmp_path / "project")
    monkeypatch.chdir(project)
    assert synth(project, capfd, "--no-dvc-add")[0] == 0
    assert synth(project, capfd, "--no-dvc-add", "--seed", "3")[0] == 0  # its own: replaced
    write_file(project / "data" / "raw" / "Early" / "notes.txt", b"the user's notes\n")

    code, err = synth(project, capfd, "--no-dvc-add", "--seed", "4")

    assert one_line_error(code, err, "data synth")
    assert "Early/notes.txt (in no recorded version)" in err
