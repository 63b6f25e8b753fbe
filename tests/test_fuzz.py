"""Hostile input: random, truncated and mutated bytes into every reader of outside data.

Each case must end in a valid value or a clear error (UserError, DataError is one), never in
another exception, a hang (per-test timeouts, hypothesis deadlines) or a dead interpreter (the
last test runs the readers on thousands of cases in a subprocess and checks its exit status).
Run with ``-s`` to see how many cases ran."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from seg_bench.errors import DataError, UserError

CASES: Counter = Counter()
FUZZ = settings(
    deadline=5000,  # ms per case: a reader that hangs fails here, or at the test's timeout
    derandomize=True,  # the same cases in CI every time; raise max_examples locally to explore
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module", autouse=True)
def _count_cases():
    yield
    print(f"\n[fuzz] cases run: {sum(CASES.values())} {dict(sorted(CASES.items()))}")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# --- valid seeds that the strategies damage
# ----------------------------------------------------------
def _png(a: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a, mode=mode).save(buf, format="PNG") if mode else Image.fromarray(a).save(
        buf, format="PNG"
    )
    return buf.getvalue()


def _tif(a: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, a, **kw)
    return buf.getvalue()


RNG = np.random.default_rng(0)
PNG_GREY = _png(RNG.integers(0, 255, (20, 30), dtype=np.uint8))
PNG_RGBA = _png(RNG.integers(0, 255, (12, 9, 4), dtype=np.uint8), "RGBA")
TIF_16 = _tif(RNG.integers(0, 65535, (17, 11), dtype=np.uint16))
TIF_STACK = _tif(RNG.integers(0, 255, (3, 16, 20), dtype=np.uint8), photometric="minisblack")
TIF_DEFLATE = _tif(
    RNG.integers(0, 4, (3, 16, 20), dtype=np.uint8), photometric="minisblack", compression="zlib"
)
RLE_CSV = (
    b"ImageId,EncodedPixels,Height,Width,Usage\n"
    b"a,1 2 5 3,4,4,Public\na,10 4,4,4,Public\nb,,4,4,Public\n"
)
POINTS_CSV = b"image,x,y,note\na.png,3,4,first\na.png,5.5,6,\nb.png, 1 ,1e1,x\n"


def _record() -> bytes:
    per_image = [
        {
            "id": f"test-{i}",
            "confmat": [[90, 3], [2, 5]],
            "hist_pos": [0, 1, 4],
            "hist_neg": [7, 1, 0],
            "dsb_map": 0.5,
        }
        for i in range(2)
    ]
    rec = {
        "version": 1,
        "model": "unet",
        "seed": 0,
        "labels": "manual",
        "profile": "smoke",
        "params": 1234,
        "train_time_s": 1.5,
        "config": {"max_epochs": 1},
        "metrics": {"overall": {"iou": 0.5, "dice": 0.66}, "per_image": per_image},
    }
    return json.dumps(rec, indent=1).encode()


RECORD = _record()


@st.composite
def damaged(draw, seed: bytes):
    """Random bytes, or ``seed`` truncated, with bytes overwritten, inserted or deleted."""
    kind = draw(st.sampled_from(["random", "truncate", "flip", "flip-header", "insert", "delete"]))
    if kind == "random":
        return draw(st.binary(max_size=600))
    b = bytearray(seed)
    if kind == "truncate":
        return bytes(b[: draw(st.integers(0, len(b) - 1))])
    if kind in ("flip", "flip-header"):
        hi = min(len(b), 160) if kind == "flip-header" else len(b)
        for i, v in draw(
            st.lists(
                st.tuples(st.integers(0, hi - 1), st.integers(0, 255)), min_size=1, max_size=12
            )
        ):
            b[i] = v
        return bytes(b)
    at = draw(st.integers(0, len(b)))
    if kind == "insert":
        return bytes(b[:at]) + draw(st.binary(min_size=1, max_size=40)) + bytes(b[at:])
    return bytes(b[:at]) + bytes(b[at + draw(st.integers(1, 40)) :])


def _write(work: Path, name: str, data: bytes) -> Path:
    path = work / name
    path.write_bytes(data)
    return path


# --- RLE
# ---------------------------------------------------------------------------------------------
RLE_TEXT = st.one_of(
    st.text(alphabet="0123456789 \t\n-+_.exX\u0661\u00a0", max_size=40),
    st.lists(st.integers(-5, 2**70), max_size=12).map(lambda v: " ".join(map(str, v))),
    st.lists(st.integers(1, 40), max_size=12).map(lambda v: " ".join(map(str, v))),
)


@pytest.mark.timeout(120)
@settings(FUZZ, max_examples=600)
@given(text=RLE_TEXT, h=st.integers(1, 12), w=st.integers(1, 12))
def test_rle_decode_gives_a_mask_or_a_clear_error(text, h, w):
    from seg_bench.data.rle import rle_decode, rle_encode

    CASES["rle_decode"] += 1
    try:
        mask = rle_decode(text, (h, w))
    except UserError:
        return
    assert mask.shape == (h, w) and mask.dtype == bool
    lengths = [int(t) for t in text.split()[1::2]]
    assert mask.sum() == sum(lengths)  # accepted runs are disjoint and inside the image
    assert (rle_decode(rle_encode(mask), (h, w)) == mask).all()


@pytest.mark.timeout(120)
@settings(FUZZ, max_examples=300)
@given(data=damaged(RLE_CSV))
def test_read_rle_csv_gives_encodings_or_a_data_error(work, data):
    from seg_bench.data.rle import _parse, read_rle_csv

    CASES["read_rle_csv"] += 1
    path = _write(work, "labels.csv", data)
    try:
        out = read_rle_csv(path)
    except DataError:
        return
    for image_id, runs in out.items():
        assert isinstance(image_id, str) and image_id
        for rle in runs:
            _parse(rle, "check")  # every encoding returned is well-formed


# --- images, stacks, and a dataset reading them
# -------------------------------------------------------
@pytest.mark.timeout(180)
@settings(FUZZ, max_examples=400)
@given(
    seed=st.sampled_from(["grey.png", "rgba.png", "u16.tif", "stack.tif", "deflate.tif"]),
    data=st.data(),
)
def test_read_image_and_read_stack_give_arrays_or_a_data_error(work, seed, data):
    from seg_bench.data.io import read_image, read_stack

    source = {
        "grey.png": PNG_GREY,
        "rgba.png": PNG_RGBA,
        "u16.tif": TIF_16,
        "stack.tif": TIF_STACK,
        "deflate.tif": TIF_DEFLATE,
    }[seed]
    path = _write(work, f"x{Path(seed).suffix}", data.draw(damaged(source)))
    CASES["read_image"] += 1
    try:
        a = read_image(path)
        assert a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)
    except DataError as e:
        assert str(path) in str(e)
    if path.suffix == ".tif":
        CASES["read_stack"] += 1
        try:
            assert read_stack(path).ndim == 3
        except DataError as e:
            assert str(path) in str(e)


@pytest.fixture(scope="module")
def layouts(work):
    sys.path.insert(0, str(Path(__file__).parent))
    from data_fixtures import write_dsb, write_isbi2012

    isbi, dsb = work / "isbi2012", work / "dsb2018"
    write_isbi2012(isbi, z=6, size=48)
    write_dsb(dsb, n_images=4)
    first = sorted((dsb / "stage1_train").iterdir())[0]
    files = {
        "isbi2012 train-volume.tif": isbi / "train-volume.tif",
        "isbi2012 train-labels.tif": isbi / "train-labels.tif",
        "dsb2018 image png": next((first / "images").iterdir()),
        "dsb2018 mask png": sorted((first / "masks").iterdir())[0],
    }
    return isbi, dsb, files, {k: p.read_bytes() for k, p in files.items()}


@pytest.mark.timeout(180)
@settings(FUZZ, max_examples=120)
@given(
    which=st.sampled_from(
        [
            "isbi2012 train-volume.tif",
            "isbi2012 train-labels.tif",
            "dsb2018 image png",
            "dsb2018 mask png",
        ]
    ),
    data=st.data(),
)
def test_dataset_loaders_on_a_corrupted_file_give_samples_or_a_data_error(layouts, which, data):
    from seg_bench.data.datasets.dsb2018 import DSB2018
    from seg_bench.data.datasets.isbi2012 import ISBI2012

    isbi, dsb, files, original = layouts
    CASES["dataset loaders"] += 1
    files[which].write_bytes(data.draw(damaged(original[which])))
    try:
        dm = ISBI2012(root=isbi) if which.startswith("isbi") else DSB2018(root=dsb)
        for split in ("train", "val", "test"):
            for s in dm.samples(split):
                assert s.image.shape[:2] == s.mask.shape and set(np.unique(s.mask)) <= {0, 1}
    except DataError:
        pass
    finally:
        files[which].write_bytes(original[which])


# --- click points, result records, checkpoints
# ---------------------------------------------------------
@pytest.mark.timeout(120)
@settings(FUZZ, max_examples=300)
@given(data=damaged(POINTS_CSV))
def test_read_points_csv_gives_points_or_a_user_error(work, data):
    from seg_bench.labels import read_points_csv

    CASES["read_points_csv"] += 1
    path = _write(work, "points.csv", data)
    try:
        points = read_points_csv(path)
    except UserError:
        return
    for name, pts in points.items():
        assert isinstance(name, str) and name and pts.shape[1] == 2 and np.isfinite(pts).all()


def _record_or_user_error(path: Path):
    from seg_bench.protocol.records import read_record

    try:
        rec = read_record(path)
    except UserError:
        return None
    assert (
        rec["version"] == 1
        and isinstance(rec["metrics"], dict)
        and isinstance(rec["model"], str)
        and isinstance(rec["seed"], int)
    )
    return rec


@pytest.mark.timeout(120)
@settings(FUZZ, max_examples=300)
@given(data=damaged(RECORD))
def test_read_record_gives_a_record_or_a_user_error(work, data):
    CASES["read_record"] += 1
    _record_or_user_error(_write(work, "r.json", data))


def test_every_truncation_of_a_record_and_hostile_json_are_user_errors(work):
    for cut in range(len(RECORD)):
        CASES["read_record"] += 1
        assert _record_or_user_error(_write(work, "t.json", RECORD[:cut])) is None, cut
    hostile = [
        b"[" * 100_000,
        b'{"a":' * 50_000,
        b'{"version": 1, "metrics": 5, "model": "m", "seed": 0}',
        b'{"version": 1, "metrics": {}, "model": 3, "seed": 0}',
        b'{"version": 1, "metrics": {}, "model": "m", "seed": "0"}',
        b"\xff\xfe\x00",
        b"NaN",
        b'"a string"',
        b"null",
    ]
    for data in hostile:
        CASES["read_record"] += 1
        assert _record_or_user_error(_write(work, "h.json", data)) is None, data[:40]
    assert _record_or_user_error(_write(work, "ok.json", RECORD))["model"] == "unet"


@pytest.fixture(scope="module")
def checkpoint_bytes(work) -> bytes:
    from seg_bench.training.checkpoint_io import AtomicCheckpointIO
    from seg_bench.training.task import SegmentationTask

    task = SegmentationTask(model="unet", width=0.0625)
    AtomicCheckpointIO().save_checkpoint(
        {"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams), "epoch": 0},
        work / "good.ckpt",
    )
    return (work / "good.ckpt").read_bytes()


@st.composite
def damaged_checkpoint(draw, seed: bytes):
    """Like ``damaged``, plus overwrites inside the pickled metadata (data.pkl), which a random
    flip in a 0.5 MB file would rarely hit."""
    if draw(st.booleans()):
        return draw(damaged(seed))
    start = seed.find(b"data.pkl") + 8
    b = bytearray(seed)
    for i, v in draw(
        st.lists(
            st.tuples(st.integers(start, start + 3000), st.integers(0, 255)), min_size=1, max_size=4
        )
    ):
        b[i] = v
    return bytes(b)


@pytest.mark.timeout(240)
@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_load_checkpoint_gives_a_model_or_a_user_error(work, checkpoint_bytes, data):
    from seg_bench.inference.checkpoint import load_checkpoint

    CASES["load_checkpoint"] += 1
    path = _write(work, "m.ckpt", data.draw(damaged_checkpoint(checkpoint_bytes)))
    try:
        task = load_checkpoint(path)
    except UserError as e:
        assert str(path) in str(e)
        return
    assert not task.training


# --- crash safety: the same readers on many cases in a child interpreter
# --------------------------------
CRASH_LOOP = r"""
import io, json, os, signal, sys
from collections import Counter
import numpy as np
sys.path.insert(0, sys.argv[3])
from test_fuzz import (PNG_GREY, PNG_RGBA, TIF_16, TIF_STACK, TIF_DEFLATE, RLE_CSV, POINTS_CSV,
                       RECORD)
from seg_bench.errors import UserError
from seg_bench.data.io import read_image, read_stack
from seg_bench.data.rle import read_rle_csv, rle_decode
from seg_bench.labels import read_points_csv
from seg_bench.protocol.records import read_record

work, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(12345)

def damage(b):
    b = bytearray(b)
    k = rng.integers(0, 5)
    if k == 0:
        return rng.bytes(int(rng.integers(0, 600)))
    if k == 1:
        return bytes(b[: rng.integers(0, len(b))])
    if k == 2:
        for _ in range(rng.integers(1, 16)):
            b[rng.integers(0, min(len(b), 200))] = rng.integers(0, 256)
        return bytes(b)
    if k == 3:
        for _ in range(rng.integers(1, 16)):
            b[rng.integers(0, len(b))] = rng.integers(0, 256)
        return bytes(b)
    at = rng.integers(0, len(b) + 1)
    return bytes(b[:at]) + rng.bytes(int(rng.integers(1, 64))) + bytes(b[at:])

readers = [("read_image png", ".png", PNG_GREY, read_image),
           ("read_image png rgba", ".png", PNG_RGBA, read_image),
           ("read_image tif", ".tif", TIF_16, read_image),
           ("read_stack", ".tif", TIF_STACK, read_stack),
           ("read_stack zlib", ".tif", TIF_DEFLATE, read_stack),
           ("read_rle_csv", ".csv", RLE_CSV, read_rle_csv),
           ("read_points_csv", ".csv", POINTS_CSV, read_points_csv),
           ("read_record", ".json", RECORD, read_record)]
outcome = Counter()
signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(TimeoutError("hang")))
for i in range(n):
    for name, suffix, seed, fn in readers:
        path = os.path.join(work, "case" + suffix)
        with open(path, "wb") as f:
            f.write(damage(seed))
        signal.alarm(10)
        try:
            fn(path)
            outcome["value"] += 1
        except UserError:
            outcome["clear error"] += 1
        except TimeoutError:
            print(json.dumps({"hang": name, "case": i})); sys.exit(4)
        except Exception as e:
            print(json.dumps({"unexpected": name, "case": i, "error": repr(e)[:300]})); sys.exit(3)
        finally:
            signal.alarm(0)
    text = " ".join(str(int(v)) for v in rng.integers(-3, 60, int(rng.integers(0, 10))))
    try:
        rle_decode(text, (int(rng.integers(1, 9)), int(rng.integers(1, 9))))
        outcome["value"] += 1
    except UserError:
        outcome["clear error"] += 1
print(json.dumps(outcome))
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_readers_never_crash_or_hang_the_interpreter(work):
    n = 300
    done = subprocess.run(
        [sys.executable, "-c", CRASH_LOOP, str(work), str(n), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=work,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
    )
    assert done.returncode == 0, (
        f"exit status {done.returncode}: {done.stdout[-2000:]} {done.stderr[-3000:]}"
    )
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    total = outcome["value"] + outcome["clear error"]
    CASES["subprocess (all readers)"] += total
    assert total == n * 9 and outcome["clear error"] > n  # it really exercised the error paths
