"""MODEL_CARD.md for an exported model, and the sections it shares with the bioimage.io README:
what the network is, what it was trained on (and under which license), how it scored on the
test split (with the bootstrap CI of the result record), where it fails, how to reproduce it.

A ``record`` is the run's result record (``protocol/bench.py``); its optional ``ci`` entry maps
metric names to (low, high) 95 % bootstrap intervals (``cli`` adds it, as the leaderboard does).
Without a record the card says so instead of inventing numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from seg_bench.io import atomic_write
from seg_bench.registry import DATASETS, MODELS

HEADLINE = ("iou", "dice", "auroc", "dsb_map", "vrand", "vinfo", "accuracy")

# Architecture papers, by model-name prefix (the registry descriptions name them in short).
MODEL_CITATIONS: dict[str, tuple[str, str]] = {
    "unet": (
        "Ronneberger, Fischer, Brox. U-Net: Convolutional Networks for Biomedical Image "
        "Segmentation. MICCAI 2015",
        "10.1007/978-3-319-24574-4_28",
    ),
    "resunet": (
        "Zhang, Liu, Wang. Road Extraction by Deep Residual U-Net. IEEE GRSL 2018",
        "10.1109/LGRS.2018.2802944",
    ),
    "segnet": (
        "Badrinarayanan, Kendall, Cipolla. SegNet: A Deep Convolutional Encoder-Decoder "
        "Architecture for Image Segmentation. IEEE TPAMI 2017",
        "10.1109/TPAMI.2016.2644615",
    ),
    "tiramisu": (
        "Jégou et al. The One Hundred Layers Tiramisu: Fully Convolutional DenseNets for "
        "Semantic Segmentation. CVPR Workshops 2017",
        "10.1109/CVPRW.2017.156",
    ),
    "smp-": (
        "Iakubovskii. Segmentation Models Pytorch (segmentation_models.pytorch)",
        "https://github.com/qubvel-org/segmentation_models.pytorch",
    ),
}


def model_citation(model: str) -> tuple[str, str] | None:
    """(text, doi or url) of the architecture's paper, if known."""
    for prefix, cite in MODEL_CITATIONS.items():
        if model.startswith(prefix):
            return cite
    return None


def dataset_info(dataset: str | None) -> dict[str, Any]:
    """Citation and license the dataset class declares (``citation``, ``data_license``)."""
    if not dataset or dataset not in DATASETS:
        return {"citation": None, "license": "unknown (no dataset recorded)", "research_only": True}
    cls = DATASETS.get(dataset)
    return {
        "citation": getattr(cls, "citation", None),
        "license": getattr(cls, "data_license", "unknown: see the dataset's own terms"),
        "research_only": bool(getattr(cls, "research_only", True)),
    }


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def validation_section(record: dict[str, Any] | None) -> list[str]:
    """The test metrics with their 95 % CIs, as Markdown lines."""
    lines = ["## Validation", ""]
    if not record:
        return [*lines, "No result record was given (`--record`): no test metrics.", ""]
    overall, ci = record["metrics"].get("overall", {}), record.get("ci", {})
    n = len(record["metrics"].get("per_image", []))
    lines += [
        f"Test split of `{record['dataset']}` ({n} images), seed {record['seed']}, "
        f"post-processing {record['metrics'].get('postprocess', {})}, "
        f"TTA {record['metrics'].get('tta')}. 95 % CI: bootstrap over test images.",
        "",
        "| metric | value | 95 % CI |",
        "|---|---|---|",
    ]
    for key in [k for k in HEADLINE if k in overall] + sorted(set(overall) - set(HEADLINE)):
        lo_hi = ci.get(key)
        interval = f"[{lo_hi[0]:.4f}, {lo_hi[1]:.4f}]" if lo_hi else "-"
        lines.append(f"| {key} | {overall[key]:.4f} | {interval} |")
    return [*lines, ""]


def worst_images(record: dict[str, Any], k: int = 3) -> list[tuple[str, float]]:
    """The ``k`` test images with the lowest IoU (from their confusion matrices)."""
    scores = []
    for r in record["metrics"].get("per_image", []):
        cm = np.asarray(r.get("confmat", [[0, 0], [0, 0]]), dtype=float)
        union = cm[1, 1] + cm[0, 1] + cm[1, 0]
        scores.append((str(r.get("id")), float(cm[1, 1] / union) if union else 1.0))
    return sorted(scores, key=lambda s: s[1])[:k]


def data_section(meta: dict[str, Any], record: dict[str, Any] | None) -> list[str]:
    dataset = record.get("dataset") if record else None
    info = dataset_info(dataset)
    lines = ["## Training data and license", ""]
    if record:
        splits = record.get("data", {}).get("splits", {})
        sizes = ", ".join(f"{k} {len(v)}" for k, v in splits.items())
        lines.append(
            f"Dataset `{dataset}` (labels: {record.get('labels', 'manual')}); images per split: "
            f"{sizes or 'not recorded'}; split: {record.get('data', {}).get('split', 'seeded')}."
        )
    lines.append(f"Data license: {info['license']}.")
    if info["research_only"]:
        lines.append(
            "**Research use only**: the training data's terms do not allow commercial use, and "
            "these weights are derived from it; ask the data's owners before any other use."
        )
    return [*lines, ""]


def citations(meta: dict[str, Any], record: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(text, doi or url) pairs: the architecture's paper, then the dataset's."""
    out = [model_citation(meta["model"])]
    out.append(dataset_info(record.get("dataset") if record else None)["citation"])
    return [c for c in out if c]


def citation_lines(meta: dict[str, Any], record: dict[str, Any] | None) -> list[str]:
    lines = ["## Citations", ""]
    for text, ref in citations(meta, record):
        link = ref if ref.startswith("http") else f"https://doi.org/{ref}"
        lines.append(f"- {text}. {link}")
    return [*lines, ""]


def _architecture(meta: dict[str, Any], record: dict[str, Any] | None) -> list[str]:
    hp, geo = meta["hparams"], meta["geometry"]
    params = record.get("params") if record else None
    return [
        "## Architecture",
        "",
        f"`{hp['model']}`: {MODELS.describe(hp['model'])}. Width {hp.get('width', 1.0)}, "
        f"options {hp.get('model_options') or {}}, {hp.get('in_channels', 1)} input channel(s), "
        f"{hp.get('num_classes', 2)} classes" + (f", {params:,} parameters." if params else "."),
        f"Input: float32 N,C,H,W after {_input_steps(hp)}percentile normalisation (1 and "
        f"99.8 % per channel); exported graphs need H and W multiples of {geo['multiple']} (at "
        f"least {max(geo['multiple'], geo['min_size'])}): pad ({geo['pad_mode']}) and crop back.",
        "",
    ]


def _input_steps(hp: dict[str, Any]) -> str:
    """What the training data did to an image before normalising it (DSB: flip a bright
    background), which every tool that runs the exported network must do too."""
    if (hp.get("input_options") or {}).get("invert_bright"):
        return (
            "flipping the intensities (max - value) of an image whose median grey level is above "
            "half its range (brightfield, H&E), as `seg-bench predict` does, then "
        )
    return ""


def _training(record: dict[str, Any] | None) -> list[str]:
    if not record:
        return []
    cfg = record.get("config", {})
    keys = ("max_epochs", "batch_size", "patch_size", "optimizer", "lr", "loss", "augment")
    setting = ", ".join(f"{k} {cfg[k]}" for k in keys if k in cfg)
    return [
        "## Training",
        "",
        f"Profile `{record.get('profile')}`: {setting}. Precision {record.get('precision')}, "
        f"{record.get('epochs')} epochs in {record.get('train_time_s', 0):.0f} s on "
        f"{record.get('hardware', {}).get('device', record.get('hardware'))}. Seed "
        f"{record.get('seed')}; best validation score {_fmt(record.get('best_val'))}.",
        "",
    ]


def _use(record: dict[str, Any] | None) -> list[str]:
    lines = [
        "## Intended use and known failure modes",
        "",
        "Semantic segmentation of images like the training data (same modality, scale and "
        "staining); other data needs re-validation. Probabilities are not calibrated.",
    ]
    if record and record["metrics"].get("per_image"):
        worst = ", ".join(f"`{i}` (IoU {s:.3f})" for i, s in worst_images(record))
        lines.append(f"Worst test images: {worst}.")
    return [*lines, ""]


def _export(meta: dict[str, Any], results: list) -> list[str]:
    lines = ["## Exported files", ""] + [f"- {r.line()}" for r in results]
    return [*lines, f"- checkpoint sha256 `{meta['checkpoint_sha256']}`", ""]


def _provenance(meta: dict[str, Any], record: dict[str, Any] | None) -> list[str]:
    lines = ["## Reproduce", ""]
    if not record:
        return [*lines, f"Checkpoint `{meta['checkpoint']}`; no result record was given.", ""]
    command = (
        f"seg-bench bench --dataset {record['dataset']} --models {record['model']} "
        f"--seeds {record['seed'] + 1} --profile {record.get('profile')}"
    )
    return [*lines, f"Commit `{record.get('commit')}`.", "", f"    {command}", ""]


def model_card(meta: dict[str, Any], results: list, record: dict[str, Any] | None) -> str:
    dataset = record.get("dataset", "?") if record else "?"
    parts = [f"# Model card: {meta['model']} trained on {dataset}", ""]
    parts += _architecture(meta, record) + data_section(meta, record) + _training(record)
    parts += validation_section(record) + _use(record) + _export(meta, results)
    parts += _provenance(meta, record) + citation_lines(meta, record)
    return "\n".join(parts)


def write_model_card(
    path: Path, meta: dict[str, Any], results: list, record: dict[str, Any] | None
) -> None:
    with atomic_write(path, "w") as f:
        f.write(model_card(meta, results, record))


VALIDATION_KEY = "val/iou"  # what checkpointing maximises (training/trainer.py)


def best_record(records: list[dict[str, Any]], dataset: str) -> dict[str, Any]:
    """The leaderboard's best model chosen on validation only: the model with the best mean
    ``val/iou`` over its seeds (manual labels), then that model's seed with the best
    ``val/iou``. Test scores play no part, so the choice does not leak the test split."""
    from seg_bench.errors import UserError

    scored = [
        r
        for r in records
        if r.get("labels", "manual") == "manual"
        and isinstance(r.get("best_val"), dict)
        and VALIDATION_KEY in r["best_val"]
    ]
    if not scored:
        raise UserError(
            f"--best --dataset {dataset}: no result records with a validation score; "
            f"run `seg-bench bench --dataset {dataset}` first (or check --results-dir)"
        )
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in scored:
        by_model.setdefault(r["model"], []).append(r)
    model = max(
        sorted(by_model),
        key=lambda m: np.mean([r["best_val"][VALIDATION_KEY] for r in by_model[m]]),
    )
    return max(by_model[model], key=lambda r: (r["best_val"][VALIDATION_KEY], -r["seed"]))
