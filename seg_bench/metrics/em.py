"""Segmentation scores of the EM connectomics challenges (ISBI 2012, SNEMI3D / ISBI 2013).

Every result dict carries a ``definition`` string that names the exact variant, because the
published numbers come from several slightly different formulas.

ISBI 2012: foreground-restricted V_rand and V_info
-------------------------------------------------
Arganda-Carreras et al. (2015), Front. Neuroanat. 9:142, as implemented in Fiji's
``trainableSegmentation.metrics`` (``RandError.getForegroundRestrictedRandIndexStatsN2`` and
``VariationOfInformation.foregroundRestrictedStats``):

* only pixels in the ground-truth foreground (cell interior, GT label != 0) are counted;
  n is their number and p_ij = n_ij / n is the joint distribution of GT segment i (rows) and
  predicted segment j (columns);
* predicted background (label 0, i.e. membrane) pixels inside the GT foreground are counted
  as **singletons**, each its own segment of probability 1/n;
* t_i = sum_j p_ij (GT, including the predicted-background column), s_j = sum_{i} p_ij over
  predicted segments j >= 1, plus the singletons;
* V_rand = 2 sum_ij p_ij^2 / (sum_j s_j^2 + sum_i t_i^2): the F-score of the Rand split score
  sum p^2 / sum t^2 (recall) and merge score sum p^2 / sum s^2 (precision). Singletons add
  1/n^2 each to sum p^2 and to sum s^2;
* V_info = 2 I(S; T) / (H(S) + H(T)), with the singletons as segments of S; 1.0 when both
  entropies are 0 (both are one segment).

:func:`isbi2012_scores` binarises a probability map at t = 0.0, 0.1, ..., 1.0 (exactly k/10),
labels the cells of the binarised prediction *and* of the GT with 4-connected components
(per 2-D slice), computes V_rand and V_info per slice, **averages each over the slices for
every threshold, and reports the maximum of those slice averages over the thresholds** (one
threshold for the whole stack, chosen separately for V_rand and for V_info).

The challenge's final ranking (Fiji ``getMaximalVRandAfterThinning`` /
``getMaximalVInfoAfterThinning``, per-slice averaged) first **thins the predicted borders to
1 px**: a 4-connected watershed floods the thresholded border pixels from the predicted cells
and leaves 1-px watershed lines (label 0) where two cells meet. ``thin=True`` does the same
with scikit-image's watershed, whose tie-breaking between two cells may put a line pixel one
pixel off Fiji's (not compared here: no Fiji on the development machine). Without thinning,
every predicted border pixel inside a GT cell is a singleton, so thick borders cost V_rand
although they split nothing: the unthinned score is the stricter one. Fiji pools the Rand
pair counts of all slices into one F-score in its older scripts, where we average the
per-slice scores; that pooled variant is reported too as ``v_rand_pooled``.

SNEMI3D: adapted Rand error
---------------------------
:func:`adapted_rand_error` works on whole 3-D (or n-D) label volumes; voxels with GT label 0
are excluded. ``variant="skimage"`` (default) counts pairs of distinct voxels,
ARE = 1 - sum n_ij(n_ij - 1) / (1/2 sum a_i(a_i - 1) + 1/2 sum b_j(b_j - 1)), and treats
predicted label 0 as an ordinary segment: it equals ``skimage.metrics.adapted_rand_error``.
``variant="snemi3d"`` reproduces the SNEMI3D challenge script (also in Fiji
``RandError.adaptedRandIndexStats3DN2`` and gala/CREMI ``adapted_rand``): raw counts
squared, predicted label 0 left out of sum n_ij^2 and sum b_j^2 and replaced by the term
sum_i n_i0 / N (N = all voxels) in both, the script's own normalisation.

Precision and recall are named in the usual way: precision = (pairs together in both) /
(pairs together in the prediction), recall = (pairs together in both) / (pairs together in the
GT). Note: scikit-image (checked on 0.26) returns them the other way round: its ``prec``
divides by the GT pair count (its row sums), although its docstring says "divided by the
number in the test image". ARE is symmetric and unaffected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from seg_bench.errors import UserError
from seg_bench.metrics.inputs import check_label_pair, check_same_shape, to_numpy
from seg_bench.metrics.instance import _overlap_pairs

__all__ = [
    "ISBI2012_THRESHOLDS",
    "foreground_restricted_scores",
    "isbi2012_scores",
    "thinned_cells",
    "adapted_rand_error",
]

ISBI2012_THRESHOLDS = np.arange(11) / 10.0
_FOUR_CONNECTED = ndi.generate_binary_structure(2, 1)


def _sparse_contingency(a: np.ndarray, b: np.ndarray):
    """Non-zero entries (i, j, n_ij) of the contingency table of two label arrays.

    Labels are renumbered 1..n with 0 kept as 0, so i == 0 / j == 0 still mean label 0;
    pixels that are 0 in both are not counted.
    """
    _, _, i, j, counts, _, _ = _overlap_pairs(a, b)
    return i, j, counts


def _xlogx(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(x)
    pos = x > 0
    out[pos] = x[pos] * np.log(x[pos])
    return out


def _fr_terms(gt: np.ndarray, seg: np.ndarray) -> dict[str, float]:
    """Foreground-restricted sums for one slice (GT 0 excluded, predicted 0 = singletons)."""
    fg = gt != 0
    n = int(fg.sum())
    if n == 0:
        raise UserError("the ground truth has no foreground (all labels 0): V_rand is undefined")
    i, j, c = _sparse_contingency(gt[fg], seg[fg])
    single = c[j == 0].sum()  # predicted background inside GT foreground
    obj = j > 0
    # Rand terms in counts^2 (divide by n^2 for probabilities).
    rows = np.bincount(i, weights=c).astype(np.float64)  # GT sizes incl. singletons
    cols = np.bincount(j[obj], weights=c[obj]).astype(np.float64)
    sum_t2 = float(np.dot(rows, rows))
    sum_s2 = float(np.dot(cols, cols)) + float(single)
    sum_p2 = float(np.dot(c[obj].astype(np.float64), c[obj])) + float(single)
    # Entropies (natural log) over the foreground distribution.
    h_t = -float(_xlogx(rows / n).sum())
    h_s = -float(_xlogx(cols / n).sum()) + float(single) / n * np.log(n)
    h_st = -float(_xlogx(c[obj] / n).sum()) + float(single) / n * np.log(n)
    return {
        "n": n,
        "sum_p2": sum_p2,
        "sum_s2": sum_s2,
        "sum_t2": sum_t2,
        "h_s": h_s,
        "h_t": h_t,
        "h_st": h_st,
    }


def _scores_from_terms(terms: dict[str, float]) -> dict[str, float]:
    p2, s2, t2 = terms["sum_p2"], terms["sum_s2"], terms["sum_t2"]
    h_s, h_t, h_st = terms["h_s"], terms["h_t"], terms["h_st"]
    mutual = h_s + h_t - h_st
    if h_s + h_t <= 1e-15:
        v_info = 1.0
    else:
        v_info = float(np.clip(2.0 * mutual / (h_s + h_t), 0.0, 1.0))
    return {
        "v_rand": 2.0 * p2 / (s2 + t2),
        "rand_split": p2 / t2,  # recall of GT pairs
        "rand_merge": p2 / s2,  # precision of predicted pairs
        "v_info": v_info,
        "info_split": float(mutual / h_s) if h_s > 1e-15 else 1.0,
        "info_merge": float(mutual / h_t) if h_t > 1e-15 else 1.0,
    }


_FR_DEFINITION = (
    "foreground-restricted (GT label 0 excluded), predicted label 0 inside GT foreground "
    "counted as singletons; V_rand = 2*sum p_ij^2/(sum s_j^2 + sum t_i^2), "
    "V_info = 2*I(S;T)/(H(S)+H(T)) (Arganda-Carreras et al. 2015)"
)


def foreground_restricted_scores(gt_labels: Any, pred_labels: Any) -> dict[str, Any]:
    """Foreground-restricted V_rand and V_info of two label images (ISBI 2012 definitions).

    Parameters
    ----------
    gt_labels : integer label array
        Ground-truth segments; 0 = background/membrane (excluded from the score).
    pred_labels : integer label array, same shape
        Predicted segments; 0 = background/membrane (each such pixel inside the GT foreground
        is its own singleton segment).

    Returns
    -------
    dict
        ``v_rand``, ``rand_split`` (recall), ``rand_merge`` (precision), ``v_info``,
        ``info_split`` (I/H(S)), ``info_merge`` (I/H(T)), ``definition``.

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.array([[1, 1, 1, 1]])
    >>> round(foreground_restricted_scores(gt, np.array([[1, 1, 2, 2]]))["v_rand"], 4)
    0.6667
    """
    gt, pred = check_label_pair(gt_labels, pred_labels, "gt_labels", "pred_labels")
    out: dict[str, Any] = _scores_from_terms(_fr_terms(gt, pred))
    out["definition"] = _FR_DEFINITION
    return out


def _stack(slices: Any, name: str) -> list[np.ndarray]:
    if isinstance(slices, np.ndarray) or hasattr(slices, "detach"):
        arr = to_numpy(slices, name)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise UserError(
                f"{name} must be a (Z, H, W) stack or a list of 2-D slices, got shape {arr.shape}"
            )
        return list(arr)
    if not isinstance(slices, Sequence) or len(slices) == 0:
        raise UserError(f"{name} must be a non-empty (Z, H, W) array or list of 2-D slices")
    out = [to_numpy(s, f"{name}[{k}]") for k, s in enumerate(slices)]
    for k, s in enumerate(out):
        if s.ndim != 2:
            raise UserError(f"{name}[{k}] must be 2-D, got shape {s.shape}")
    return out


def _gt_cells(z: int, prob: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Checks slice ``z``'s probabilities; returns its GT cells (4-connected, labelled)."""
    check_same_shape(prob, gt, f"prob_slices[{z}]", f"gt_slices[{z}]")
    if not np.issubdtype(prob.dtype, np.floating):
        raise UserError(f"prob_slices[{z}] must be float probabilities, got dtype {prob.dtype}")
    if prob.size and not (prob.min() >= 0.0 and prob.max() <= 1.0):
        raise UserError(f"prob_slices[{z}] must lie in [0, 1] (no NaN)")
    gt_cells, _ = ndi.label(np.asarray(gt) != 0, structure=_FOUR_CONNECTED)
    if not gt_cells.any():
        raise UserError(f"gt_slices[{z}] has no cell-interior (non-zero) pixels")
    return gt_cells


_ISBI2012_COMMON = (
    "ISBI 2012: " + _FR_DEFINITION + "; interior = interior probability > t for "
    "t = 0.0..1.0 step 0.1, 4-connected components per 2-D slice"
)
_ISBI2012_AVERAGING = "; scores averaged over slices per threshold, maximum over thresholds"
_ISBI2012_DEFINITION = _ISBI2012_COMMON + _ISBI2012_AVERAGING + "; no boundary thinning"
_ISBI2012_THINNED_DEFINITION = (
    _ISBI2012_COMMON
    + " grown over the borders by a 4-connected watershed that leaves 1-px lines"
    + _ISBI2012_AVERAGING
    + "; borders thinned as in the challenge's final ranking"
)


def thinned_cells(interior: np.ndarray) -> np.ndarray:
    """Cells of a binary interior mask after thinning the borders to 1-px watershed lines.

    >>> m = np.array([[1, 0, 0, 0, 1]] * 2, dtype=bool)
    >>> thinned_cells(m)[0].tolist()
    [1, 1, 0, 2, 2]
    """
    cells, n = ndi.label(interior, structure=_FOUR_CONNECTED)
    if n == 0:
        return cells
    border = (~interior).astype(np.uint8)
    return watershed(border, markers=cells, connectivity=1, watershed_line=True)


def _scores_per_threshold(
    probs: list[np.ndarray], gts: list[np.ndarray], prob_of: str, thin: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """V_rand and V_info per (threshold, slice), and the pair-count sums pooled over slices."""
    n_thr = ISBI2012_THRESHOLDS.size
    v_rand = np.zeros((n_thr, len(probs)))
    v_info = np.zeros((n_thr, len(probs)))
    pooled = np.zeros((n_thr, 3))  # sum_p2, sum_s2, sum_t2 over slices
    for z, (prob, gt) in enumerate(zip(probs, gts, strict=True)):
        gt_cells = _gt_cells(z, prob, gt)
        interior = 1.0 - prob if prob_of == "membrane" else prob
        for k, t in enumerate(ISBI2012_THRESHOLDS):
            mask = interior > t
            cells = thinned_cells(mask) if thin else ndi.label(mask, _FOUR_CONNECTED)[0]
            terms = _fr_terms(gt_cells, cells)
            s = _scores_from_terms(terms)
            v_rand[k, z], v_info[k, z] = s["v_rand"], s["v_info"]
            pooled[k] += (terms["sum_p2"], terms["sum_s2"], terms["sum_t2"])
    return v_rand, v_info, pooled


def isbi2012_scores(
    prob_slices: Any, gt_slices: Any, *, prob_of: str = "membrane", thin: bool = False
) -> dict[str, Any]:
    """ISBI 2012 scores: best foreground-restricted V_rand and V_info over 11 thresholds.

    Parameters
    ----------
    prob_slices : (Z, H, W) float array or list of 2-D arrays, values in [0, 1]
        Predicted probability maps.
    gt_slices : (Z, H, W) array or list of 2-D arrays
        ISBI 2012 labels: non-zero (255) = cell interior, 0 = membrane. Each slice's GT
        segments are its 4-connected components of non-zero pixels.
    prob_of : {"membrane", "interior"}, default "membrane"
        What ``prob_slices`` is the probability of. This project trains ISBI 2012 with
        membrane (label 0) as foreground, hence the default. The official challenge
        submissions were interior maps ("interior").
    thin : bool, default False
        Thin the predicted borders to 1-px watershed lines before labelling, as the
        challenge's final ranking does (see the module docstring).

    Returns
    -------
    dict
        ``v_rand`` and ``v_info`` (maxima over thresholds of the slice means),
        ``v_rand_threshold`` / ``v_info_threshold`` (where the maxima were reached: the
        threshold on the *interior* probability), ``thresholds`` (11,), ``v_rand_per_threshold``
        and ``v_info_per_threshold`` (11,), ``v_rand_per_slice`` / ``v_info_per_slice``
        ((11, Z) arrays), ``v_rand_pooled`` (max over thresholds of Fiji's pooled-over-slices
        Rand F-score) and ``definition``.

    Notes
    -----
    At threshold t a pixel is cell interior when its interior probability is > t (for
    ``prob_of="membrane"``, interior probability = 1 - prob). Cells of the binarised
    prediction are labelled with 4-connectivity per 2-D slice; membrane pixels inside the GT
    foreground count as singletons (with ``thin``, only the 1-px watershed lines are left
    as membrane). See the module docstring for how this relates to Fiji's scripts.

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.array([[255, 255, 0, 255, 255]] * 3, dtype=np.uint8)
    >>> membrane = (gt == 0).astype(float)
    >>> isbi2012_scores(membrane, gt)["v_rand"]
    1.0
    """
    if prob_of not in ("membrane", "interior"):
        raise UserError(f"prob_of must be 'membrane' or 'interior', got {prob_of!r}")
    probs = _stack(prob_slices, "prob_slices")
    gts = _stack(gt_slices, "gt_slices")
    if len(probs) != len(gts):
        raise UserError(f"prob_slices has {len(probs)} slices but gt_slices has {len(gts)}")
    v_rand, v_info, pooled = _scores_per_threshold(probs, gts, prob_of, thin)
    rand_mean = v_rand.mean(axis=1)
    info_mean = v_info.mean(axis=1)
    rand_pooled = 2 * pooled[:, 0] / (pooled[:, 1] + pooled[:, 2])
    kr, ki = int(np.argmax(rand_mean)), int(np.argmax(info_mean))
    return {
        "v_rand": float(rand_mean[kr]),
        "v_info": float(info_mean[ki]),
        "v_rand_threshold": float(ISBI2012_THRESHOLDS[kr]),
        "v_info_threshold": float(ISBI2012_THRESHOLDS[ki]),
        "thresholds": ISBI2012_THRESHOLDS.copy(),
        "v_rand_per_threshold": rand_mean,
        "v_info_per_threshold": info_mean,
        "v_rand_per_slice": v_rand,
        "v_info_per_slice": v_info,
        "v_rand_pooled": float(rand_pooled.max()),
        "definition": _ISBI2012_THINNED_DEFINITION if thin else _ISBI2012_DEFINITION,
    }


def adapted_rand_error(
    gt_labels: Any, pred_labels: Any, *, variant: str = "skimage"
) -> dict[str, Any]:
    """SNEMI3D adapted Rand error of two label volumes (GT label 0 excluded).

    Parameters
    ----------
    gt_labels : integer label array (any dimension, typically (Z, Y, X))
        Ground-truth segments; 0 = unlabelled/boundary, excluded.
    pred_labels : integer label array, same shape
    variant : {"skimage", "snemi3d"}, default "skimage"
        "skimage": pairs of distinct voxels, predicted 0 an ordinary label; equals
        ``skimage.metrics.adapted_rand_error``. "snemi3d": the challenge script's formula
        (see the module docstring).

    Returns
    -------
    dict
        ``are`` (1 - F-score), ``f_score``, ``precision`` (pairs together in both / together
        in the prediction), ``recall`` (/ together in the GT), ``definition``.

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.array([[1, 1, 2, 2]])
    >>> adapted_rand_error(gt, np.array([[5, 5, 5, 5]]))["recall"]
    1.0
    """
    gt, pred = check_label_pair(gt_labels, pred_labels, "gt_labels", "pred_labels")
    fg = gt != 0
    if not fg.any():
        raise UserError("gt_labels has no voxel with a label other than 0: the score is undefined")
    i, j, c = _sparse_contingency(gt[fg], pred[fg])
    c = c.astype(np.float64)
    if variant == "skimage":
        rows = np.bincount(i, weights=c)
        cols = np.bincount(j, weights=c)
        both = float(np.dot(c, c) - c.sum())
        in_gt = float(np.dot(rows, rows) - rows.sum())
        in_pred = float(np.dot(cols, cols) - cols.sum())
        definition = (
            "SNEMI3D adapted Rand error, scikit-image form: pairs of distinct voxels, GT label 0 "
            "excluded, predicted label 0 an ordinary segment"
        )
    elif variant == "snemi3d":
        n_all = float(gt.size)
        obj = j > 0
        extra = float(c[~obj].sum()) / n_all
        rows = np.bincount(i, weights=c)
        cols = np.bincount(j[obj], weights=c[obj])
        both = float(np.dot(c[obj], c[obj])) + extra
        in_gt = float(np.dot(rows, rows))
        in_pred = float(np.dot(cols, cols)) + extra
        definition = (
            "SNEMI3D adapted Rand error, challenge-script form: counts squared, GT label 0 "
            "excluded, predicted label 0 left out and replaced by sum_i n_i0 / N"
        )
    else:
        raise UserError(f"variant must be 'skimage' or 'snemi3d', got {variant!r}")
    if in_gt == 0 or in_pred == 0:
        # Only possible in the skimage form, with single-voxel segments on one side.
        precision = 1.0 if in_pred == 0 else both / in_pred
        recall = 1.0 if in_gt == 0 else both / in_gt
    else:
        precision, recall = both / in_pred, both / in_gt
    den = in_gt + in_pred
    f_score = 2.0 * both / den if den > 0 else 1.0
    return {
        "are": 1.0 - f_score,
        "f_score": f_score,
        "precision": precision,
        "recall": recall,
        "definition": definition,
    }
