"""The code version a result record names."""

import subprocess

import pytest

from seg_bench.protocol.provenance import git_commit


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "t@example.org")
    _git(tmp_path, "config", "user.name", "t")
    (tmp_path / "model.py").write_text("width = 1\n")
    (tmp_path / "leaderboards").mkdir()
    (tmp_path / "leaderboards" / "epfl.md").write_text("| unet | 0.5 |\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "init")
    return tmp_path


def test_rewritten_leaderboards_do_not_make_the_commit_dirty(repo):
    sha = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    assert git_commit(repo) == sha
    (repo / "leaderboards" / "epfl.md").write_text(
        "| unet | 0.6 |\n"
    )  # what a previous bench leaves
    assert git_commit(repo) == sha
    (repo / "model.py").write_text("width = 2\n")  # a code change does
    assert git_commit(repo) == sha + "-dirty"


def test_outside_a_repository_provenance_says_so(tmp_path):
    assert git_commit(tmp_path) == "not a git checkout"


def test_an_installed_package_inside_another_repository_names_no_commit(repo):
    # A virtual environment inside a user's own repository: site-packages is in that work
    # tree, but the package was installed from a wheel and that repository's HEAD is not ours.
    site = repo / "venv" / "lib" / "site-packages"
    site.mkdir(parents=True)
    assert git_commit(site) == "not a git checkout"


def test_hardware_label_names_the_best_vector_extension_when_the_record_has_it():
    from seg_bench.hardware import hardware_label, vector_extension

    assert vector_extension({"sse2", "avx2", "avx512f", "avx512_bf16"}) == "avx512_bf16"
    assert vector_extension({"avx2", "fma"}) == "avx2"
    assert vector_extension({"neon"}) is None
    cpu = {"cpu": "AMD EPYC", "cores": 2, "gpu": None}
    assert hardware_label({**cpu, "isa": "avx2"}) == "2 CPU cores (AMD EPYC, avx2)"
    older = "2 CPU cores (AMD EPYC, vector extensions not recorded)"  # may be either EPYC
    assert hardware_label(cpu) == older
    assert hardware_label({**cpu, "gpu": "1 x H200", "isa": "avx2"}) == "1 x H200"


def test_a_record_names_the_commit_its_process_started_from_not_a_later_one(repo):
    # A bench runs for hours while commits land; the process still runs the code it imported.
    from seg_bench.protocol.provenance import running_commit

    started = running_commit(repo)
    (repo / "model.py").write_text("width = 3\n")
    _git(repo, "commit", "-qam", "meanwhile")
    assert git_commit(repo) != started
    assert running_commit(repo) == started


def test_the_hardware_of_a_run_names_only_the_gpus_it_used(monkeypatch):
    # A CPU run on a GPU machine was labelled with the GPU, --devices 1 with every GPU.
    import torch

    from seg_bench.hardware import hardware

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "H200")
    assert hardware("cpu", "auto")["gpu"] is None
    assert hardware("gpu", 1)["gpu"] == "1 x H200"
    assert hardware("auto", "auto")["gpu"] == "8 x H200"
