"""Sliding-window inference, Gaussian blending and D4 TTA (seg_bench.inference.sliding_window)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from seg_bench.errors import UserError
from seg_bench.inference.sliding_window import (
    MIN_WEIGHT,
    d4_transforms,
    gaussian_weight,
    predict_logits,
    predict_volume,
    tile_positions,
    tile_starts,
)

# ------------------------------------------------------------------------------------------
# Models


def pointwise_model(in_ch: int = 2, out_ch: int = 3, seed: int = 0) -> nn.Module:
    """1x1 conv + tanh with fixed weights: a pointwise function, so translation- and
    D4-equivariant."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1), nn.Tanh())


def conv3x3_model(in_ch: int = 2, out_ch: int = 3, seed: int = 0) -> nn.Module:
    """Small receptive field (5x5), zero padding; translation-equivariant but not D4-equivariant."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(in_ch, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, out_ch, 3, padding=1)
    )


class Recorder(nn.Module):
    """Wraps a model; records every input shape and the mode it was called in."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[tuple[int, ...], bool, bool]] = []

    def forward(self, x):
        self.calls.append((tuple(x.shape), torch.is_inference_mode_enabled(), self.training))
        return self.inner(x)


def image(b: int, c: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def manual_tta(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        preds = []
        for flip in (False, True):
            for k in range(4):
                t = x.flip(-1) if flip else x
                y = model(torch.rot90(t, k, dims=(-2, -1)))
                y = torch.rot90(y, -k, dims=(-2, -1))
                preds.append(y.flip(-1) if flip else y)
        return torch.stack(preds).mean(0)


def single(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


# ------------------------------------------------------------------------------------------
# Tiling


@pytest.mark.parametrize("size", [16, 17, 37, 53, 64, 70, 100, 257])
@pytest.mark.parametrize("window", [1, 16, 32])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.9, 0.999])
def test_tile_starts_cover_axis_flush_and_respect_overlap(size, window, overlap):
    if window > size:
        assert tile_starts(size, window, overlap) == [0]
        return
    starts = tile_starts(size, window, overlap)
    assert starts[0] == 0 and starts[-1] == size - window  # last tile flush with the border
    assert starts == sorted(set(starts))
    covered = np.zeros(size, int)
    for s in starts:
        covered[s : s + window] += 1
    assert covered.min() >= 1
    step = max(1.0, window * (1 - overlap))
    # Neighbours overlap by at least the requested fraction (up to rounding) ...
    assert np.diff(starts).max(initial=0) <= math.ceil(step)
    # ... and no more tiles than needed.
    assert len(starts) == math.ceil((size - window) / step - 1e-9) + 1


def test_tile_starts_known_values():
    assert tile_starts(64, 16, 0.0) == [0, 16, 32, 48]
    assert tile_starts(64, 16, 0.5) == [0, 8, 16, 24, 32, 40, 48]
    assert tile_starts(37, 16, 0.0) == [0, 11, 21]  # evenly spread, half rounded up
    assert tile_starts(16, 16, 0.5) == [0]


def test_tile_positions_cover_every_pixel_including_padded_frame():
    for shape, window in [((37, 53), 16), ((100, 70), 32), ((10, 40), (16, 8)), ((5, 3), 8)]:
        pos = tile_positions(shape, window, 0.25)
        wh, ww = (window, window) if isinstance(window, int) else window
        h, w = max(shape[0], wh), max(shape[1], ww)
        cover = np.zeros((h, w), int)
        for y, x in pos:
            assert 0 <= y <= h - wh and 0 <= x <= w - ww
            cover[y : y + wh, x : x + ww] += 1
        assert cover.min() >= 1


def test_model_sees_every_tile_in_batches_of_batch_size():
    model = Recorder(pointwise_model())
    x = image(2, 2, 37, 53)
    predict_logits(model, x, window=16, overlap=0.25, batch_size=5)
    n_tiles = 2 * len(tile_positions((37, 53), 16, 0.25))
    sizes = [shape[0] for shape, _, _ in model.calls]
    assert sum(sizes) == n_tiles
    assert all(s == 5 for s in sizes[:-1]) and 1 <= sizes[-1] <= 5
    assert all(shape[1:] == (2, 16, 16) for shape, _, _ in model.calls)


def test_gaussian_weight_shape_peak_symmetry_and_positive_floor():
    g = gaussian_weight((16, 24))
    assert g.shape == (16, 24) and g.dtype == torch.float32
    assert float(g.max()) == pytest.approx(1.0, abs=1e-6)
    # sigma = window / 8 never gets near the floor (corners ~exp(-16)); a narrow sigma hits it.
    assert float(g.min()) > 1e-7
    narrow = gaussian_weight(32, sigma_scale=1 / 64)
    assert float(narrow.min()) == pytest.approx(MIN_WEIGHT, rel=1e-5) and float(narrow.max()) == 1.0
    assert torch.equal(g, g.flip(0)) and torch.equal(g, g.flip(1))
    # sigma = window / 8: one sigma from the centre the weight is exp(-1/2).
    sq = gaussian_weight(32).double()
    c = (32 - 1) / 2
    expected = math.exp(-0.5 * ((0 - c) / 4.0) ** 2) / math.exp(-0.5 * (0.5 / 4.0) ** 2)
    assert float(sq[15, 0] / sq[15, 15]) == pytest.approx(max(expected, MIN_WEIGHT), rel=1e-4)


# ------------------------------------------------------------------------------------------
# Sliding window vs single pass


@pytest.mark.parametrize("shape,window", [((37, 53), 16), ((100, 70), 32), ((40, 33), (16, 24))])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_sliding_window_equals_single_pass_for_pointwise_model(shape, window, overlap):
    model = pointwise_model()
    x = image(2, 2, *shape)
    out = predict_logits(model, x, window=window, overlap=overlap, batch_size=3)
    assert out.shape == (2, 3, *shape) and out.dtype == torch.float32
    torch.testing.assert_close(out, single(model, x), atol=1e-5, rtol=1e-5)


def test_window_none_is_single_pass_in_batches():
    model = Recorder(pointwise_model())
    x = image(5, 2, 21, 19)
    out = predict_logits(model, x, window=None, batch_size=2)
    assert [shape[0] for shape, _, _ in model.calls] == [2, 2, 1]
    torch.testing.assert_close(out, single(model.inner, x))


@pytest.mark.parametrize("overlap", [0.25, 0.5])
def test_sliding_window_close_to_single_pass_for_small_receptive_field(overlap):
    model = conv3x3_model()
    x = image(1, 2, 100, 70)
    ref = single(model, x)
    out = predict_logits(model, x, window=32, overlap=overlap, batch_size=4)
    scale = float(ref.abs().max())
    # Pixels near a tile seam are also deep inside a neighbour whose Gaussian weight dominates,
    # along the image border too (a weight floor that flattened the low edge weights broke that).
    assert float((out - ref).abs().max()) < 1e-2 * scale
    assert float((out - ref).abs().mean()) < 2e-4 * scale


def test_sliding_window_exact_away_from_seams_without_overlap():
    model = conv3x3_model()
    x = image(1, 2, 64, 48)
    out = predict_logits(model, x, window=16, overlap=0.0)
    ref = single(model, x)
    # Tiles at 0,16,32,48 / 0,16,32: the receptive field (radius 2) crosses a seam only within
    # 2 px of it; everything else, including the image border, is exact.
    keep = torch.ones(64, 48, dtype=torch.bool)
    for s in (16, 32, 48):
        keep[s - 2 : s + 2, :] = False
        keep[:, s - 2 : s + 2] = False
    torch.testing.assert_close(out[..., keep], ref[..., keep], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out, ref, atol=1e-3)  # the seams really differ


@pytest.mark.parametrize(
    "shape,window",
    [((10, 12), 16), ((1, 5), 8), ((40, 10), 16), ((7, 50), (16, 16)), ((3, 3), (4, 16))],
)
def test_image_smaller_than_window_is_padded_and_cropped(shape, window):
    model = pointwise_model()
    x = image(2, 2, *shape)
    out = predict_logits(model, x, window=window, overlap=0.25)
    assert out.shape == (2, 3, *shape)
    torch.testing.assert_close(out, single(model, x), atol=1e-5, rtol=1e-5)


def test_padding_reflects_where_possible():
    # A model that outputs the mean of its input tile everywhere reveals what the padding was.
    class TileMean(nn.Module):
        def forward(self, x):
            return x.mean(dim=(-2, -1), keepdim=True).expand_as(x).clone()

    x = torch.arange(1.0, 11.0).reshape(1, 1, 1, 10).expand(1, 1, 10, 10).contiguous()
    out = predict_logits(TileMean(), x, window=(10, 14))  # pad 2 + 2 columns: reflect
    padded = torch.nn.functional.pad(x, (2, 2, 0, 0), mode="reflect")
    assert float(out[0, 0, 0, 0]) == pytest.approx(float(padded.mean()))
    x1 = torch.full((1, 1, 1, 4), 3.0)
    out1 = predict_logits(TileMean(), x1, window=(4, 4))  # 1 row: reflect impossible, zeros
    assert float(out1[0, 0, 0, 0]) == pytest.approx(3.0 / 4)


def test_batch_images_are_independent():
    model = conv3x3_model()
    x = image(3, 2, 37, 53)
    out = predict_logits(model, x, window=16, overlap=0.5, batch_size=7)
    for i in range(3):
        torch.testing.assert_close(
            out[i : i + 1],
            predict_logits(model, x[i : i + 1], window=16, overlap=0.5),
            atol=1e-6,
            rtol=1e-6,
        )


# ------------------------------------------------------------------------------------------
# TTA


def test_d4_transforms_are_the_eight_distinct_inverse_pairs():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    ts = d4_transforms()
    assert len(ts) == 8
    images = {tuple(f(x).flatten().tolist()) + tuple(f(x).shape) for f, _ in ts}
    assert len(images) == 8
    for f, inv in ts:
        assert torch.equal(inv(f(x)), x)


@pytest.mark.parametrize("window", [None, 16])
def test_tta_with_equivariant_model_equals_no_tta(window):
    model = pointwise_model()
    x = image(2, 2, 37, 53)
    plain = predict_logits(model, x, window=window, overlap=0.25)
    tta = predict_logits(model, x, window=window, overlap=0.25, tta=True)
    torch.testing.assert_close(tta, plain, atol=1e-5, rtol=1e-5)


def test_tta_with_non_equivariant_model_is_average_of_eight_predictions():
    model = conv3x3_model()
    x = image(2, 2, 20, 28)  # not square: rotations swap H and W
    plain = predict_logits(model, x)
    tta = predict_logits(model, x, tta=True)
    assert not torch.allclose(tta, plain, atol=1e-3)
    torch.testing.assert_close(tta, manual_tta(model, x), atol=1e-5, rtol=1e-5)


def test_tta_with_sliding_window_close_to_manual_average():
    model = conv3x3_model()
    x = image(1, 2, 64, 80)
    tta = predict_logits(model, x, window=32, overlap=0.5, tta=True, batch_size=3)
    ref = manual_tta(model, x)
    scale = float(ref.abs().max())
    assert float((tta - ref).abs().max()) < 1e-2 * scale
    assert float((tta - ref).abs().mean()) < 2e-4 * scale
    assert float((tta - predict_logits(model, x, window=32, overlap=0.5)).abs().max()) > 1e-3


def test_tta_with_non_square_window():
    model = pointwise_model()
    x = image(1, 2, 37, 53)
    out = predict_logits(model, x, window=(16, 24), overlap=0.25, tta=True)
    torch.testing.assert_close(out, single(model, x), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------
# Arguments, mode, precision


@pytest.mark.parametrize("overlap", [-0.1, 1.0, 1.5, float("nan"), "0.5", None, True])
def test_bad_overlap_raises_user_error(overlap):
    with pytest.raises(UserError, match="overlap"):
        predict_logits(pointwise_model(), image(1, 2, 8, 8), window=4, overlap=overlap)


@pytest.mark.parametrize("window", [0, -4, (4,), (4, 0), 2.5, "16", True])
def test_bad_window_raises_user_error(window):
    with pytest.raises(UserError, match="window"):
        predict_logits(pointwise_model(), image(1, 2, 8, 8), window=window)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5])
def test_bad_batch_size_raises_user_error(batch_size):
    with pytest.raises(UserError, match="batch_size"):
        predict_logits(pointwise_model(), image(1, 2, 8, 8), window=4, batch_size=batch_size)


def test_bad_image_and_bad_model_output_raise_user_error():
    with pytest.raises(UserError, match="image"):
        predict_logits(pointwise_model(), torch.zeros(2, 8, 8))
    halve = nn.Sequential(nn.Conv2d(2, 1, 2, stride=2))
    with pytest.raises(UserError, match="model returned shape"):
        predict_logits(halve, image(1, 2, 8, 8), window=4)


@pytest.mark.parametrize("start_training", [True, False])
def test_training_flags_restored_and_model_runs_in_eval_inference_mode(start_training):
    model = Recorder(
        nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2), nn.Dropout(0.5))
    )
    model.train(start_training)
    model.inner[1].eval()  # a frozen BatchNorm inside a training model must stay frozen
    before = [m.training for m in model.modules()]
    out = predict_logits(model, image(1, 2, 20, 20), window=8, tta=True)
    assert [m.training for m in model.modules()] == before
    assert all(inf and not training for _, inf, training in model.calls)
    assert not out.requires_grad


def test_training_flags_restored_when_model_raises():
    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 1)

        def forward(self, x):
            raise RuntimeError("boom")

    model = Boom().train()
    with pytest.raises(RuntimeError, match="boom"):
        predict_logits(model, image(1, 1, 8, 8), window=4)
    assert model.training and model.conv.training


def test_parameterless_model_runs_on_cpu():
    class Double(nn.Module):
        def forward(self, x):
            return 2 * x

    x = image(1, 1, 30, 30)
    torch.testing.assert_close(predict_logits(Double(), x, window=16, overlap=0.5), 2 * x)


@pytest.mark.parametrize("window,tta", [(None, False), (None, True), (16, True)])
def test_model_returning_its_input_neither_mutates_nor_aliases_the_image(window, tta):
    class Identity(nn.Module):
        def forward(self, x):
            return x

    x = image(2, 1, 20, 20)
    before = x.clone()
    out = predict_logits(Identity(), x, window=window, tta=tta)
    torch.testing.assert_close(out, before)
    assert torch.equal(x, before) and out.data_ptr() != x.data_ptr()


def test_bf16_autocast_on_cpu_returns_float32_close_to_fp32():
    model = conv3x3_model()
    x = image(1, 2, 37, 53)
    ref = predict_logits(model, x, window=16)
    out = predict_logits(model, x, window=16, precision="bf16")
    assert out.dtype == torch.float32
    assert float((out - ref).abs().max()) < 0.05 * float(ref.abs().max())
    with pytest.raises(UserError, match="precision"):
        predict_logits(model, x, precision="int8")


# ------------------------------------------------------------------------------------------
# Volumes


def test_predict_volume_binary_sigmoid_zhw():
    model = pointwise_model(in_ch=1, out_ch=1)
    vol = np.random.default_rng(0).integers(0, 1000, size=(5, 37, 29)).astype(np.uint16)
    probs = predict_volume(model, vol, window=16, overlap=0.25, slice_batch=2)
    assert probs.shape == (5, 1, 37, 29) and probs.dtype == np.float32
    ref = torch.sigmoid(single(model, torch.from_numpy(vol.astype(np.float32))[:, None])).numpy()
    np.testing.assert_allclose(probs, ref, atol=1e-5)


def test_predict_volume_multiclass_softmax_zhwc():
    model = conv3x3_model(in_ch=2, out_ch=3)
    vol = np.random.default_rng(0).random((4, 24, 20, 2), dtype=np.float32)
    probs = predict_volume(model, vol, window=None)
    assert probs.shape == (4, 3, 24, 20) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    ref = torch.softmax(single(model, torch.from_numpy(vol).permute(0, 3, 1, 2)), dim=1).numpy()
    np.testing.assert_allclose(probs, ref, atol=1e-5)


def test_predict_volume_bad_shape():
    with pytest.raises(UserError, match="volume"):
        predict_volume(pointwise_model(), np.zeros((4, 4)))


# ------------------------------------------------------------------------------------------
# Device: a trained model is tested and applied where it was meant to run


@pytest.mark.parametrize("gpu_present", [False, True])
def test_inference_device_follows_the_accelerator_and_the_hardware(monkeypatch, gpu_present):
    from seg_bench.inference.device import inference_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu_present)
    assert inference_device("cpu").type == "cpu"
    assert inference_device("auto").type == ("cuda" if gpu_present else "cpu")
    if gpu_present:
        assert inference_device("gpu").type == "cuda"
    else:
        with pytest.raises(UserError, match="'gpu'.*no CUDA GPU"):
            inference_device("gpu")


def test_evaluate_moves_the_model_to_the_gpu_lightning_handed_back_on_the_cpu(monkeypatch):
    """Lightning's teardown puts the model on the CPU after fit; evaluate must move it back."""
    import dataclasses

    from seg_bench.config import resolve_config
    from seg_bench.evaluation.evaluate import evaluate
    from seg_bench.training.trainer import build_datamodule

    moves = []

    class RecordsMoves(nn.Conv2d):
        def to(self, *args, **kwargs):  # record, stay on the CPU (there is no GPU here)
            moves.append(torch.device(args[0]))
            return self

    cfg = resolve_config("synthetic", "unet", "smoke", num_workers=0, logger="none")
    dm = build_datamodule(cfg)
    dm.setup("test")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    evaluate(RecordsMoves(dm.in_channels, 1, 1), dm, cfg)
    evaluate(RecordsMoves(dm.in_channels, 1, 1), dm, dataclasses.replace(cfg, accelerator="cpu"))
    assert moves == [torch.device("cuda"), torch.device("cpu")]


def test_evaluate_runs_the_layout_it_is_told_and_both_score_alike():
    """A model fresh from NHWC training and one loaded from its checkpoint must be tested in
    the same layout, or their inference speeds are not comparable."""
    from seg_bench.config import resolve_config
    from seg_bench.evaluation.evaluate import evaluate
    from seg_bench.training.trainer import build_datamodule, build_task

    cfg = resolve_config("synthetic", "unet", "smoke", num_workers=0, logger="none")
    dm = build_datamodule(cfg)
    dm.setup("test")
    model = build_task(cfg, dm).model
    # A 3 x 3 kernel over several channels: its two layouts differ (a 1 x 1 one's may not).
    weight = lambda: [p for p in model.parameters() if p.ndim == 4 and p.shape[1] > 1][1]  # noqa: E731
    nhwc = evaluate(model, dm, cfg, channels_last=True)
    assert weight().is_contiguous(memory_format=torch.channels_last)
    assert not weight().is_contiguous()
    nchw = evaluate(model, dm, cfg)  # the NHWC model is put back, not left as it came
    assert weight().is_contiguous()
    assert (nhwc["inference_layout"], nchw["inference_layout"]) == ("channels_last", "contiguous")
    for key in ("iou", "dice", "auroc"):
        assert nhwc["overall"][key] == pytest.approx(nchw["overall"][key], abs=1e-4)
