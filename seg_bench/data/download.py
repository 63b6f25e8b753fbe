"""Download the benchmark datasets into their original layout: pooch, SHA-256, safe extraction.

``download(name, root)`` fetches every file of a dataset (skipping what is already there),
checks its SHA-256 where one is known, extracts archives safely and converts mirrors to the
layout the loaders read. Sources:

- dsb2018: BBBC038v1 at the Broad (CC0); no checksums are published (nothing is verified).
- isbi2012: torch-em's SHA-256-checked HDF5 mirror (training volume + labels), converted to
  train-volume.tif / train-labels.tif (needs h5py). The unlabelled test-volume.tif is not mirrored.
- isbi2013: torch-em's SHA-256-checked HDF5 mirrors of SNEMI3D, converted to train-input.tif,
  train-labels.tif and test-input.tif (needs h5py).
- epfl: the CVLab data page (documents.epfl.ch); no checksums are published.
- ncmir: CDeep3M's ``mito_testsample`` on GitHub, pinned to one commit; SHA-256 of the
  training and test slices (byte-identical to the shared sample), none for validation/.

A checksum mismatch deletes the file and stops; a failed download names the URL and says which
files to place where by hand.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath

import numpy as np

from seg_bench.data.base import data_root
from seg_bench.data.io import value_set
from seg_bench.errors import DataError, UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Remote:
    url: str
    path: str  # where it goes, relative to the dataset folder
    sha256: str | None  # None: no checksum is published, so nothing is verified
    done: str | None = None  # relative path whose presence means this file was fetched and unpacked


@dataclass(frozen=True)
class Source:
    remotes: tuple[Remote, ...]
    expected: tuple[str, ...]  # present after a successful download (relative paths)
    manual: str  # what to place where by hand; "{dest}" is filled in
    finish: Callable[[Path], None] | None = None  # extract archives / convert mirrors


# --- safe extraction ------------------------------------------------------------------------
def _refuse(archive: Path, name: str, why: str) -> UserError:
    return UserError(
        f"{archive}: refusing archive entry '{name}': {why}; nothing outside the target folder is "
        "written"
    )


def _inside(dest: Path, name: str) -> bool:
    return (dest / name).resolve().is_relative_to(dest.resolve())


def _check_name(archive: Path, dest: Path, name: str) -> None:
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        raise _refuse(archive, name, "absolute path")
    if ".." in PurePosixPath(posix).parts:
        raise _refuse(archive, name, "'..' in the path")
    if not _inside(dest, posix):
        raise _refuse(archive, name, "it resolves outside the target folder")


def safe_extract(archive: str | Path, dest: str | Path) -> Path:
    """Extract a zip or tar archive into ``dest``; refuse absolute paths, ``..``, escaping links.

    Zip symlink entries are refused outright; tar symlinks and hard links only where their
    target is relative and has no '..' (so no chain of links can leave ``dest``); tar devices
    and FIFOs are refused. Raises UserError naming the entry before anything is written.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _check_name(archive, dest, info.filename)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise _refuse(archive, info.filename, "symbolic link")
            zf.extractall(dest)
        return dest
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for m in members:
                _check_name(archive, dest, m.name)
                if m.issym() or m.islnk():
                    # A link with '..' could escape through another link of the same archive
                    # (resolving it against the still-empty folder cannot tell): refused.
                    link = PurePosixPath(m.linkname.replace("\\", "/"))
                    if link.is_absolute() or ".." in link.parts:
                        kind = "symbolic" if m.issym() else "hard"
                        why = f"{kind} link to '{m.linkname}' (absolute or with '..')"
                        raise _refuse(archive, m.name, why)
                elif not (m.isfile() or m.isdir()):
                    raise _refuse(archive, m.name, "device or FIFO")
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: a second line of defence
                try:
                    tf.extractall(dest, members=members, filter="data")
                except tarfile.FilterError as e:
                    raise _refuse(archive, e.tarinfo.name, str(e)) from None
            else:  # pragma: no cover
                tf.extractall(dest, members=members)
        return dest
    raise DataError(
        f"{archive}: not a zip or tar archive; expected the downloaded archive, delete it and "
        "download again"
    )


def _extract_into(archive: Path, folder: Path) -> None:
    """Extract so that the archive's content ends up in ``folder`` (whether or not the archive
    wraps it in a top-level folder of that name), then delete the archive."""
    tmp = folder.parent / f".{folder.name}.extracting"
    shutil.rmtree(tmp, ignore_errors=True)
    safe_extract(archive, tmp)
    entries = [p for p in tmp.iterdir() if not p.name.startswith(("__MACOSX", "."))]
    inner = (
        entries[0]
        if len(entries) == 1 and entries[0].is_dir() and entries[0].name == folder.name
        else tmp
    )
    shutil.rmtree(inner / "__MACOSX", ignore_errors=True)
    if not folder.exists():  # one rename: a kill cannot leave a half-filled folder as done
        inner.rename(folder)
        shutil.rmtree(tmp, ignore_errors=True)
        archive.unlink()
        return
    for p in inner.iterdir():
        old = folder / p.name
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
        shutil.move(str(p), old)
    shutil.rmtree(tmp, ignore_errors=True)
    archive.unlink()


# --- conversions of mirrors to the original layouts ---------------------------------------------
def _h5py(path: Path, makes: str):
    try:
        import h5py
    except ImportError:
        raise DataError(
            f"{path}: converting this HDF5 mirror to {makes} needs h5py; run `pip install h5py` "
            "and download again "
            "(the checked file is kept)"
        ) from None
    return h5py


def isbi2012_labels(labels: np.ndarray) -> np.ndarray:
    """Mirror labels -> the original convention (uint8, 255 = cell interior, 0 = membrane).

    Two-valued labels of any coding ({0,1}, {0,255}, inverted) are mapped by area: cell
    interior is the majority (~78% of pixels), membrane the minority.
    """
    values = sorted(value_set(labels.astype(np.int64) if labels.dtype.kind == "b" else labels))
    if len(values) != 2:
        raise DataError(
            f"ISBI 2012 mirror: membrane labels hold values {values[:6]}; expected two values "
            "(membrane / cell)"
        )
    counts = [(labels == v).sum() for v in values]
    interior = values[int(np.argmax(counts))]
    return np.where(labels == interior, 255, 0).astype(np.uint8)


def write_stacks(dest: Path, stacks: dict[str, np.ndarray]) -> None:
    import tifffile

    for name, data in stacks.items():
        tmp = dest / f".{name}.part"
        tifffile.imwrite(tmp, data, photometric="minisblack")  # Z,H,W grey: a page per slice
        tmp.replace(dest / name)


def _finish_isbi2012(dest: Path) -> None:
    src = dest / "isbi.h5"
    h5py = _h5py(src, "train-volume.tif / train-labels.tif")
    with h5py.File(src, "r") as f:
        raw, labels = np.asarray(f["raw"]), np.asarray(f["labels/membranes"])
    write_stacks(
        dest,
        {"train-volume.tif": raw.astype(np.uint8), "train-labels.tif": isbi2012_labels(labels)},
    )


def snemi_ids(ids: np.ndarray) -> np.ndarray:
    top = int(ids.max(initial=0))
    return ids.astype(np.uint16 if top < 2**16 else np.uint32 if top < 2**32 else np.uint64)


def _finish_isbi2013(dest: Path) -> None:
    train, test = dest / "snemi_train.h5", dest / "snemi_test.h5"
    h5py = _h5py(train, "train-input.tif / train-labels.tif / test-input.tif")
    with h5py.File(train, "r") as f:
        raw, ids = np.asarray(f["volumes/raw"]), np.asarray(f["volumes/labels/neuron_ids"])
    with h5py.File(test, "r") as f:
        test_raw = np.asarray(f["volumes/raw"])
    write_stacks(
        dest,
        {"train-input.tif": raw, "train-labels.tif": snemi_ids(ids), "test-input.tif": test_raw},
    )


def _finish_dsb2018(dest: Path) -> None:
    for name in ("stage1_train", "stage1_test"):
        if (dest / f"{name}.zip").is_file():
            _extract_into(dest / f"{name}.zip", dest / name)


# --- the sources ----------------------------------------------------------------------------------
BBBC038 = "https://data.broadinstitute.org/bbbc/BBBC038"


def read_checksums(name: str) -> dict[str, str]:
    """``path -> sha256`` from a sha256sum-format file shipped in ``seg_bench/data/checksums``."""
    text = (resources.files("seg_bench.data") / "checksums" / name).read_text()
    pairs = (line.split(maxsplit=1) for line in text.splitlines() if line and line[0] != "#")
    return {path.strip(): digest for digest, path in pairs}


EPFL_URL = (
    "https://documents.epfl.ch/groups/c/cv/cvlab-unit/www/data/%20ElectronMicroscopy_Hippocampus"
)
CDEEP3M = "https://raw.githubusercontent.com/CRBS/cdeep3m/abf995802608073532f324ce57425fa1b7cf9d19/mito_testsample"

# SHA-256 of CDeep3M's mito_testsample files at the commit above (training/ and testset/;
# no checksum is available for validation/).
NCMIR_SHA256 = read_checksums("ncmir.sha256")
NCMIR_VALIDATION = tuple(
    f"validation/{kind}.{n:03d}.png"
    for n in range(50, 60)
    for kind in ("images/images", "labels/mitos_3D")
)

SOURCES: dict[str, Source] = {
    "dsb2018": Source(
        remotes=(
            Remote(f"{BBBC038}/stage1_train.zip", "stage1_train.zip", None, done="stage1_train"),
            Remote(f"{BBBC038}/stage1_test.zip", "stage1_test.zip", None, done="stage1_test"),
            Remote(f"{BBBC038}/stage1_solution.csv", "stage1_solution.csv", None),
        ),
        expected=("stage1_train", "stage1_test", "stage1_solution.csv"),
        manual=(
            "get stage1_train.zip (and optionally stage1_test.zip + stage1_solution.csv) from "
            "https://bbbc.broadinstitute.org/BBBC038 and unzip them to "
            "{dest}/stage1_train/<id>/images|masks/ "
            "and {dest}/stage1_test/<id>/images/, with {dest}/stage1_solution.csv"
        ),
        finish=_finish_dsb2018,
    ),
    "isbi2012": Source(
        remotes=(
            Remote(
                "https://oc.embl.de/index.php/s/h0TkwqxU0PJDdMd/download",
                "isbi.h5",
                "0e10fe909a1243084d91773470856993b7d40126a12e85f0f1345a7a9e512f29",
            ),
        ),
        expected=("train-volume.tif", "train-labels.tif"),
        manual=(
            "place train-volume.tif and train-labels.tif (and optionally test-volume.tif) from the "
            "ISBI 2012 "
            "challenge (https://imagej.net/events/isbi-2012-segmentation-challenge) in {dest}/"
        ),
        finish=_finish_isbi2012,
    ),
    "isbi2013": Source(
        remotes=(
            Remote(
                "https://oc.embl.de/index.php/s/43iMotlXPyAB39z/download",
                "snemi_train.h5",
                "5b130a24d9eb23d972fede0f1a403bc05f6808b361cfa22eff23b930b12f0615",
            ),
            Remote(
                "https://oc.embl.de/index.php/s/aRhphk35H23De2s/download",
                "snemi_test.h5",
                "3df3920a0ddec6897105845f842b2665d37a47c2d1b96d4f4565682e315a59fa",
            ),
        ),
        expected=("train-input.tif", "train-labels.tif", "test-input.tif"),
        manual=(
            "place train-input.tif, train-labels.tif and test-input.tif from SNEMI3D "
            "(https://snemi3d.grand-challenge.org) in {dest}/"
        ),
        finish=_finish_isbi2013,
    ),
    "epfl": Source(
        remotes=tuple(
            Remote(f"{EPFL_URL}/{n}", n, None)
            for n in (
                "training.tif",
                "training_groundtruth.tif",
                "testing.tif",
                "testing_groundtruth.tif",
            )
        ),
        expected=(
            "training.tif",
            "training_groundtruth.tif",
            "testing.tif",
            "testing_groundtruth.tif",
        ),
        manual=(
            "place training.tif, training_groundtruth.tif, testing.tif and testing_groundtruth.tif "
            "from "
            "https://www.epfl.ch/labs/cvlab/data/data-em/ in {dest}/"
        ),
    ),
    "ncmir": Source(
        remotes=tuple(Remote(f"{CDEEP3M}/{p}", p, h) for p, h in NCMIR_SHA256.items())
        + tuple(Remote(f"{CDEEP3M}/{p}", p, None) for p in NCMIR_VALIDATION),
        expected=tuple(NCMIR_SHA256) + NCMIR_VALIDATION,
        manual=(
            "copy the folders training/, validation/ and testset/ of mito_testsample in "
            "https://github.com/CRBS/cdeep3m to {dest}/"
        ),
    ),
}


def fetch(remote: Remote, dest: Path, manual: str, force: bool = False) -> Path:
    """Download one file (pooch), verify its SHA-256, delete it on a mismatch. A present file
    is kept where its checksum matches (or none is published) unless ``force``; then the new
    download replaces it only once complete."""
    target = dest / remote.path
    if remote.sha256 is None and not target.exists():
        log.warning("no published checksum for %s: its content is not verified", remote.url)
    if not (force and target.exists()):
        return _retrieve(remote, target, manual.format(dest=dest))
    with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as tmp:
        fresh = _retrieve(remote, Path(tmp) / target.name, manual.format(dest=dest))
        os.replace(fresh, target)
    return target


def _retrieve(remote: Remote, target: Path, manual: str) -> Path:
    import pooch

    known = f"sha256:{remote.sha256}" if remote.sha256 else None
    try:
        pooch.retrieve(
            remote.url,
            known_hash=known,
            fname=target.name,
            path=target.parent,
            progressbar=False,
            downloader=pooch.HTTPDownloader(progressbar=False, timeout=60),
        )
    except ValueError as e:
        if "hash" not in str(e).lower():
            raise
        target.unlink(missing_ok=True)
        raise DataError(
            f"{target}: SHA-256 of the file from {remote.url} does not match {remote.sha256}; the "
            f"file was deleted. Try again later, or {manual}"
        ) from None
    except Exception as e:
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise DataError(
            f"could not download {remote.url} ({type(e).__name__}: {reason}). By hand: {manual}"
        ) from None
    return target


def damaged(src: Source, dest: Path) -> list[Path]:
    """Present files whose SHA-256 differs from the published one (archives are gone by now)."""
    import pooch

    present = [(dest / r.path, r.sha256) for r in src.remotes if r.sha256]
    return [p for p, sha in present if p.exists() and pooch.file_hash(str(p)) != sha]


def download(name: str, root: str | Path | None = None, force: bool = False) -> Path:
    """Fetch dataset ``name`` into ``root`` (else ``$SEG_BENCH_DATA/<subdir>``); returns the folder.

    Files already present are kept where their published checksum matches (a damaged one is
    fetched again); ``force=True`` fetches every file again even when the dataset looks
    complete, replacing each present one only once its download is complete.
    """
    if name not in SOURCES:
        raise UserError(
            f"no download for dataset '{name}'. Downloadable: {', '.join(sorted(SOURCES))}"
        )
    from seg_bench.registry import DATASETS  # the DataModule owns its default folder

    src = SOURCES[name]
    dest = Path(data_root(name, root, DATASETS.get(name).subdir))
    if not force and all((dest / p).exists() for p in src.expected):
        bad = damaged(src, dest)
        if not bad:
            log.info("%s: already complete in %s", name, dest)
            return dest
        log.warning("%s: %s does not match its published checksum; fetching again", name, bad[0])
    dest.mkdir(parents=True, exist_ok=True)
    for remote in src.remotes:
        if not force and remote.done is not None and (dest / remote.done).exists():
            continue
        fetch(remote, dest, src.manual, force)
    if src.finish is not None:
        src.finish(dest)
    missing = [p for p in src.expected if not (dest / p).exists()]
    if missing:
        raise DataError(
            f"{dest / missing[0]}: still missing after the download; {src.manual.format(dest=dest)}"
        )
    return dest
