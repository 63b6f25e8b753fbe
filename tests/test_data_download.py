"""Downloads through pooch from a local http.server (127.0.0.1), with checksums computed here;
safe extraction; conversions of the HDF5 mirrors. Nothing leaves the machine."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import io
import re
import sys
import tarfile
import threading
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import REAL_DATA, write_dsb, write_dsb_test

from seg_bench.data import download as dl
from seg_bench.data.datasets.dsb2018 import DSB2018
from seg_bench.data.datasets.isbi2012 import ISBI2012
from seg_bench.data.datasets.isbi2013 import ISBI2013
from seg_bench.errors import DataError, UserError


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def server(tmp_path, monkeypatch):
    """(base URL, folder it serves) on 127.0.0.1, quiet, stopped after the test."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    served = tmp_path / "served"
    served.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(served))
    )
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    httpd.shutdown()
    httpd.server_close()


def zip_folder(folder: Path, archive: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, prefix + p.relative_to(folder).as_posix())
    return archive


def patch_source(monkeypatch, name: str, remotes, **changes):
    src = dataclasses.replace(dl.SOURCES[name], remotes=tuple(remotes), **changes)
    monkeypatch.setitem(dl.SOURCES, name, src)
    return src


# --- end to end ------------------------------------------------------------------------------
def test_dsb_download_extracts_into_kaggle_layout(tmp_path, server, monkeypatch):
    url, served = server
    src = tmp_path / "src"
    write_dsb(src)
    write_dsb_test(src)
    train_zip = zip_folder(src / "stage1_train", served / "stage1_train.zip")  # entries <id>/...
    test_zip = zip_folder(
        src / "stage1_test", served / "stage1_test.zip", prefix="stage1_test/"
    )  # wrapped
    (served / "stage1_solution.csv").write_bytes((src / "stage1_solution.csv").read_bytes())
    remotes = [
        dl.Remote(
            f"{url}/stage1_train.zip", "stage1_train.zip", sha256(train_zip), done="stage1_train"
        ),
        dl.Remote(
            f"{url}/stage1_test.zip", "stage1_test.zip", sha256(test_zip), done="stage1_test"
        ),
        dl.Remote(f"{url}/stage1_solution.csv", "stage1_solution.csv", None),
    ]
    patch_source(monkeypatch, "dsb2018", remotes)
    dest = dl.download("dsb2018", tmp_path / "data")
    assert dest == tmp_path / "data"
    assert (
        not (dest / "stage1_train.zip").exists()
        and not (dest / "stage1_test" / "stage1_test").exists()
    )
    dm = DSB2018(root=dest)
    assert (
        len(dm.load_split("test")) == 2
        and len(dm.load_split("train")) + len(dm.load_split("val")) == 5
    )
    # a second call finds everything in place and fetches nothing (the server is gone)
    for p in served.iterdir():
        p.unlink()
    assert dl.download("dsb2018", dest) == dest


def test_isbi2012_mirror_converted_to_original_tiffs(tmp_path, server, monkeypatch):
    """The HDF5 mirror is read through h5py; a stand-in h5py reads an .npz with the same keys."""
    url, served = server
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 255, (6, 32, 32), dtype=np.uint8)
    membranes = np.zeros((6, 32, 32), np.uint8)
    membranes[:, ::8], membranes[:, :, ::8] = 1, 1  # mirror coding 1 = membrane (a minority)
    buf = io.BytesIO()
    np.savez(buf, **{"raw": raw, "labels/membranes": membranes})
    (served / "isbi.h5").write_bytes(buf.getvalue())

    class File(dict):
        def __init__(self, path, mode):
            super().__init__(np.load(path))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setitem(sys.modules, "h5py", types.SimpleNamespace(File=File))
    patch_source(
        monkeypatch,
        "isbi2012",
        [dl.Remote(f"{url}/isbi.h5", "isbi.h5", sha256(served / "isbi.h5"))],
    )
    dest = dl.download("isbi2012", tmp_path / "isbi")
    s = ISBI2012(root=dest).load_split("train")[0]
    assert (s.image == raw[0]).all() and (s.mask == membranes[0]).all()


def test_snemi_conversion_writes_three_stacks(tmp_path, monkeypatch):
    ids = np.zeros((4, 16, 16), np.uint64)
    ids[:, :8], ids[:, 8:] = 3, 70000
    raw = np.zeros((4, 16, 16), np.uint8)
    data = {
        tmp_path / "snemi_train.h5": {"volumes/raw": raw, "volumes/labels/neuron_ids": ids},
        tmp_path / "snemi_test.h5": {"volumes/raw": raw[:2]},
    }

    class File(dict):
        def __init__(self, path, mode):
            super().__init__(data[Path(path)])

        __enter__ = lambda self: self  # noqa: E731
        __exit__ = lambda self, *exc: False  # noqa: E731

    monkeypatch.setitem(sys.modules, "h5py", types.SimpleNamespace(File=File))
    dl._finish_isbi2013(tmp_path)
    import tifffile

    assert tifffile.imread(tmp_path / "train-labels.tif").dtype == np.uint32
    assert tifffile.imread(tmp_path / "test-input.tif").shape == (2, 16, 16)
    # 4 slices: too few for blocks with a gap; this test is about the conversion.
    assert len(ISBI2013(root=tmp_path, split_gap=0).load_split("test")) == 1


def test_missing_h5py_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py -> ImportError
    with pytest.raises(
        DataError, match=r"isbi\.h5: converting this HDF5 mirror .* `pip install h5py`"
    ):
        dl._finish_isbi2012(tmp_path)


# --- failures --------------------------------------------------------------------------------
def test_checksum_mismatch_deletes_the_file(tmp_path, server, monkeypatch):
    url, served = server
    (served / "isbi.h5").write_bytes(b"tampered content")
    patch_source(monkeypatch, "isbi2012", [dl.Remote(f"{url}/isbi.h5", "isbi.h5", "0" * 64)])
    dest = tmp_path / "isbi"
    with pytest.raises(
        DataError, match=r"isbi\.h5: SHA-256 .* does not match 0{64}; the file was deleted"
    ) as e:
        dl.download("isbi2012", dest)
    assert "train-volume.tif" in str(e.value)  # and what to place by hand
    assert list(dest.iterdir()) == []  # neither the file nor a partial temporary is left
    # a stale wrong file already in place is replaced by pooch's re-download, then refused too
    (dest / "isbi.h5").write_bytes(b"old")
    with pytest.raises(DataError, match="does not match"):
        dl.download("isbi2012", dest)
    assert not (dest / "isbi.h5").exists()


def test_a_complete_dataset_with_a_damaged_file_fetches_that_file_again(
    tmp_path, server, monkeypatch
):
    # "already complete" returned before any checksum was looked at.
    url, served = server
    good = served / "training.tif"
    good.write_bytes(b"the published stack")
    remote = dl.Remote(f"{url}/training.tif", "training.tif", sha256(good))
    patch_source(monkeypatch, "epfl", [remote], expected=("training.tif",))
    dest = tmp_path / "epfl"
    dest.mkdir()
    (dest / "training.tif").write_bytes(b"the published st")  # truncated
    dl.download("epfl", dest)
    assert (dest / "training.tif").read_bytes() == b"the published stack"


def test_force_fetches_a_file_without_checksum_again_and_keeps_it_if_that_fails(
    tmp_path, server, monkeypatch
):
    # With no published checksum pooch keeps any present file: force=True fetched nothing.
    url, served = server
    (served / "training.tif").write_bytes(b"NEW")
    remote = dl.Remote(f"{url}/training.tif", "training.tif", None)
    patch_source(monkeypatch, "epfl", [remote], expected=("training.tif",))
    dest = tmp_path / "epfl"
    dest.mkdir()
    (dest / "training.tif").write_bytes(b"OLD")
    dl.download("epfl", dest, force=True)
    assert (dest / "training.tif").read_bytes() == b"NEW"
    (served / "training.tif").unlink()  # the server fails: the present file stays as it was
    with pytest.raises(DataError, match="could not download"):
        dl.download("epfl", dest, force=True)
    assert (dest / "training.tif").read_bytes() == b"NEW"
    assert sorted(p.name for p in dest.iterdir()) == ["training.tif"]  # no temporary left


def test_unreachable_url_says_what_to_place_where(tmp_path, monkeypatch):
    import socket

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bad = f"http://127.0.0.1:{port}/training.tif"
    patch_source(monkeypatch, "epfl", [dl.Remote(bad, "training.tif", None)])
    with pytest.raises(DataError) as e:
        dl.download("epfl", tmp_path / "epfl")
    msg = str(e.value)
    assert bad in msg and "ConnectionError" in msg and "\n" not in msg
    assert f"{tmp_path / 'epfl'}/" in msg and "training_groundtruth.tif" in msg


def test_missing_checksum_warns(tmp_path, server, monkeypatch, caplog):
    url, served = server
    (served / "a.png").write_bytes(b"x")
    with caplog.at_level("WARNING"):
        dl.fetch(dl.Remote(f"{url}/a.png", "sub/a.png", None), tmp_path, "by hand")
    assert (tmp_path / "sub" / "a.png").read_bytes() == b"x"
    assert "no published checksum" in caplog.text


def test_unknown_dataset():
    with pytest.raises(UserError, match="no download for dataset 'synthetic'"):
        dl.download("synthetic", "/tmp/x")


# --- safe extraction -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["../evil.txt", "a/../../evil.txt", "/tmp/evil.txt", "C:/evil.txt"]
)
def test_zip_path_traversal_refused(tmp_path, name):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr(name, "evil")
    with pytest.raises(UserError, match=re.escape(f"'{name}'")):
        dl.safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "ok.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_zip_symlink_refused(tmp_path):
    archive = tmp_path / "link.zip"
    info = zipfile.ZipInfo("link")
    info.external_attr = (0o120777) << 16
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UserError, match="'link'.*symbolic link"):
        dl.safe_extract(archive, tmp_path / "out")


def _tar(path: Path, *members: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w") as tf:
        data = b"hello"
        ok = tarfile.TarInfo("dir/ok.txt")
        ok.size = len(data)
        tf.addfile(ok, io.BytesIO(data))
        for m in members:
            tf.addfile(m)
    return path


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type, m.linkname = kind, target
    return m


@pytest.mark.parametrize(
    "member",
    [
        _link("dir/up", "../../outside"),
        _link("dir/abs", "/etc/passwd"),
        _link("dir/hard", "../outside", tarfile.LNKTYPE),
        _link("../x", "dir/ok.txt"),
        # Each step stays inside when resolved alone against the empty folder; the chain
        # d/a -> .. then c -> d/a/.. leaves it.
        _link("c", "d/a/.."),
    ],
    ids=["symlink-up", "symlink-abs", "hardlink-up", "name-up", "symlink-chain"],
)
def test_tar_escaping_entries_refused(tmp_path, member):
    archive = _tar(tmp_path / "bad.tar", member)
    with pytest.raises(UserError, match=re.escape(f"'{member.name}'")):
        dl.safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "dir" / "ok.txt").exists()


def test_tar_internal_links_allowed(tmp_path):
    archive = _tar(
        tmp_path / "good.tar",
        _link("dir/same", "ok.txt"),
        _link("dir/hard", "dir/ok.txt", tarfile.LNKTYPE),
    )
    out = dl.safe_extract(archive, tmp_path / "out")
    assert (out / "dir" / "same").read_bytes() == b"hello" and (
        out / "dir" / "hard"
    ).read_bytes() == b"hello"


class Killed(BaseException):
    pass


def test_a_kill_while_an_archive_is_put_in_place_leaves_no_folder_that_looks_done(
    tmp_path, monkeypatch
):
    # The folder's existence marks a download done: entries moved one by one into it left a
    # half-filled folder that counted as complete.
    archive = tmp_path / "stage1_test.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name in ("a/images/a.png", "b/images/b.png", "__MACOSX/junk"):
            zf.writestr(f"stage1_test/{name}", "x")
    folder = tmp_path / "data" / "stage1_test"
    folder.parent.mkdir()

    def killed(self, target):
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(Path, "rename", killed)
        with pytest.raises(Killed):
            dl._extract_into(archive, folder)
    assert not folder.exists() and archive.exists()
    dl._extract_into(archive, folder)  # the rerun
    assert sorted(p.name for p in folder.iterdir()) == ["a", "b"] and not archive.exists()


def test_not_an_archive(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"plain")
    with pytest.raises(DataError, match=r"x\.zip: not a zip or tar archive"):
        dl.safe_extract(tmp_path / "x.zip", tmp_path / "out")


# --- conversions and the source table ---------------------------------------------------------
@pytest.mark.parametrize("interior,membrane", [(1, 0), (0, 1), (255, 0), (0, 255), (True, False)])
def test_isbi2012_labels_any_two_value_coding(interior, membrane):
    labels = np.full((2, 10, 10), interior)
    labels[:, ::3] = membrane
    out = dl.isbi2012_labels(labels)
    assert out.dtype == np.uint8 and ((out == 0) == (labels == membrane)).all()


def test_isbi2012_labels_with_three_values_refused():
    with pytest.raises(DataError, match="expected two values"):
        dl.isbi2012_labels(np.array([0, 1, 2]))


def test_source_table():
    hexsha = re.compile(r"^[0-9a-f]{64}$")
    for name, src in dl.SOURCES.items():
        assert src.remotes and src.expected and "{dest}" in src.manual, name
        for r in src.remotes:
            assert r.url.startswith("https://"), r.url
            assert r.sha256 is None or hexsha.match(r.sha256), r
    # torch-em's published SHA-256 for its mirrors
    assert dl.SOURCES["isbi2012"].remotes[0].sha256.startswith("0e10fe90")
    assert [r.sha256[:8] for r in dl.SOURCES["isbi2013"].remotes] == ["5b130a24", "3df3920a"]
    assert len(dl.SOURCES["ncmir"].remotes) == 65


@pytest.mark.data
def test_ncmir_checksums_match_the_shared_sample():
    root = REAL_DATA / "ncmir_mito"
    if not root.is_dir():
        pytest.skip(f"real NCMIR sample not found at {root}")
    for rel, h in dl.NCMIR_SHA256.items():
        assert sha256(root / rel) == h, rel
