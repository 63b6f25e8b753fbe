import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seg_bench.errors import UserError
from seg_bench.training.losses import focal, get_loss, soft_dice, unet_weight_map


def _batch(mask):
    mask = torch.as_tensor(mask)
    return {"mask": mask, "instances": mask.int()}


def test_bce_matches_torch():
    logits = torch.randn(2, 1, 5, 5)
    mask = (torch.rand(2, 5, 5) > 0.5).long()
    expected = F.binary_cross_entropy_with_logits(logits[:, 0], mask.float())
    assert torch.allclose(get_loss("bce")(logits, _batch(mask)), expected)


def test_multiclass_ce_matches_torch():
    logits = torch.randn(2, 3, 4, 4)
    mask = torch.randint(0, 3, (2, 4, 4))
    assert torch.allclose(get_loss("ce")(logits, _batch(mask)), F.cross_entropy(logits, mask))


def test_soft_dice_is_zero_for_confident_correct_and_near_one_for_wrong():
    mask = torch.zeros(1, 8, 8, dtype=torch.long)
    mask[:, 2:6, 2:6] = 1
    perfect = (mask.float() * 40 - 20)[:, None]
    assert soft_dice(perfect, _batch(mask)).item() < 1e-3
    assert soft_dice(-perfect, _batch(mask)).item() > 0.9


def test_focal_with_gamma_zero_is_cross_entropy():
    logits = torch.randn(3, 1, 6, 6)
    mask = (torch.rand(3, 6, 6) > 0.3).long()
    assert torch.allclose(
        focal(logits, _batch(mask), gamma=0.0), get_loss("bce")(logits, _batch(mask)), atol=1e-6
    )


def test_focal_down_weights_easy_pixels():
    mask = torch.ones(1, 4, 4, dtype=torch.long)
    easy = torch.full((1, 1, 4, 4), 4.0)
    assert focal(easy, _batch(mask)).item() < 1e-3 * get_loss("bce")(easy, _batch(mask)).item()


def test_unet_weight_map_by_hand():
    # Two one-pixel objects at columns 0 and 4 of a 1x5 row: the background pixel in the middle
    # (column 2) is 2 px from each, so its border term is w0 * exp(-(2+2)^2 / (2 sigma^2)).
    inst = np.array([[1, 0, 0, 0, 2]])
    mask = (inst > 0).astype(np.uint8)
    w = unet_weight_map(inst, mask, w0=10.0, sigma=5.0)
    wc_bg = 0.5 / (3 / 5)
    assert w[0, 2] == pytest.approx(wc_bg + 10 * np.exp(-16 / 50), rel=1e-6)
    assert w[0, 0] == pytest.approx(0.5 / (2 / 5))  # foreground: class weight only


def test_unet_weight_map_puts_the_border_term_on_em_membranes():
    # EM layout: the positive class is the membrane, the objects are the cells it separates.
    # The border weight went to the cell pixels beside the membrane, none to the membrane.
    inst = np.array([[1, 1, 0, 0, 2, 2]])
    membrane = (inst == 0).astype(np.uint8)
    w = unet_weight_map(inst, membrane, w0=10.0, sigma=5.0)
    wc_membrane, wc_cell = 0.5 / (2 / 6), 0.5 / (4 / 6)
    assert w[0, 2] == pytest.approx(wc_membrane + 10 * np.exp(-((1 + 2) ** 2) / 50), rel=1e-6)
    assert w[0, 1] == pytest.approx(wc_cell)  # a cell pixel: class weight only


def test_unet_weight_map_single_object_has_no_border_term():
    inst = np.zeros((6, 6), int)
    inst[1:3, 1:3] = 1
    w = unet_weight_map(inst, inst > 0)
    assert set(np.round(np.unique(w), 6)) == {round(0.5 / (4 / 36), 6), round(0.5 / (32 / 36), 6)}


def test_unknown_loss_names_the_choices():
    with pytest.raises(UserError, match="unknown loss 'l2'.*bce_dice"):
        get_loss("l2")
