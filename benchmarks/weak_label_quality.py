"""How the weak training labels of the label-source study differ from the manual masks.

For each dataset and method, the weak labels the study trains on (clicks from the manual
instances, as ``make bench LABELS=...`` makes them) are compared with the manual masks of the
training split: the study table's IoU, Dice and kappa (means over images), and, pooled over all
pixels, precision, recall and the weak/manual foreground area, which say whether a method leaks
(area > 1, low precision) or misses (low recall).

    SEG_BENCH_DATA=../shared/data python benchmarks/weak_label_quality.py epfl ncmir
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pooled(weak_samples, manual_samples) -> dict[str, float]:
    """Precision, recall and weak/manual foreground area over all pixels of the split."""
    from seg_bench.metrics import confusion_matrix, pixel_metrics

    cm = sum(
        confusion_matrix(np.asarray(w.mask) > 0, np.asarray(m.mask) > 0, 2)
        for w, m in zip(weak_samples, manual_samples, strict=True)
    )
    m = pixel_metrics(cm)  # rows = truth (manual), columns = prediction (weak)
    return {
        "precision": m["precision"],
        "recall": m["recall"],
        "area": cm[:, 1].sum() / max(cm[1].sum(), 1),
    }


def main(argv: list[str] | None = None) -> None:
    from seg_bench.data import create_datamodule
    from seg_bench.registry import LABEL_SOURCES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datasets", nargs="+")
    ap.add_argument("--methods", default="floodfill,region")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print("| dataset | method | IoU | Dice | kappa | precision | recall | weak/manual area |")
    print("| :--- | :--- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in args.datasets:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "testing stack absent" notes of the sample data
            manual = create_datamodule(name, seed=args.seed).samples("train")
            for method in args.methods.split(","):
                source = LABEL_SOURCES.create(method, seed=args.seed)
                dm = create_datamodule(name, label_source=source, seed=args.seed)
                p = pooled(dm.samples("train"), manual)
                q = source.quality["train"]
                print(
                    f"| {name} | {method} | {q['iou']:.3f} | {q['dice']:.3f} | {q['kappa']:.3f} | "
                    f"{p['precision']:.2f} | {p['recall']:.2f} | {p['area']:.2f}x |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
