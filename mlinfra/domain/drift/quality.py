"""Model quality from ground truth joined on the capture's inference id.

Classification (labels that are not all numbers, or predictions that are probabilities of a 0/1 label):
accuracy, macro F1 and, for a binary label with scores, ROC AUC (Mann-Whitney, ties averaged).
Regression (numeric labels and predictions): RMSE and MAE.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _rank(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(x.size, np.float64)
    xs = x[order]
    bounds = np.flatnonzero(np.diff(xs)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [x.size]])
    avg = (starts + ends + 1) / 2.0  # average 1-based rank of each tie group
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def roc_auc(labels01: np.ndarray, scores: np.ndarray) -> float | None:
    pos = int(labels01.sum())
    neg = labels01.size - pos
    if pos == 0 or neg == 0:
        return None
    r = _rank(scores.astype(np.float64))
    return float((r[labels01 == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    scores = []
    for c in np.unique(np.concatenate([y, p])):
        tp = int(((y == c) & (p == c)).sum())
        fp = int(((y != c) & (p == c)).sum())
        fn = int(((y == c) & (p != c)).sum())
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def quality_metrics(ids: list[str | None], predictions: np.ndarray, labels: dict[str, str],
                    problem: str = "auto", threshold: float = 0.5) -> dict[str, Any]:
    """Join predictions with labels on inference id; ``problem`` is auto, classification or regression."""
    if problem not in ("auto", "classification", "regression"):
        raise ValueError(f"quality: problem must be auto, classification or regression, got: {problem!r}")
    pairs = [(predictions[i], labels[k]) for i, k in enumerate(ids) if k is not None and k in labels]
    out: dict[str, Any] = {"labels": len(labels), "joined": len(pairs)}
    if not pairs:
        return out
    preds = [p for p, _ in pairs]
    ys = [y for _, y in pairs]
    try:
        yf = np.array(ys, np.float64)
        pf = np.array(preds, np.float64)
        numeric = bool(np.isfinite(yf).all() and np.isfinite(pf).all())
    except (TypeError, ValueError):
        numeric = False
    binary01 = numeric and set(np.unique(yf).tolist()) <= {0.0, 1.0}
    if problem == "regression" or (problem == "auto" and numeric and not binary01):
        if not numeric:
            out["error"] = "regression needs numeric labels and predictions"
            return out
        err = pf - yf
        out.update(problem="regression", rmse=float(np.sqrt(np.mean(err ** 2))), mae=float(np.mean(np.abs(err))))
        return out
    out["problem"] = "classification"
    if binary01:
        scored = bool(((pf > 0) & (pf < 1)).any())
        labels_pred = (pf >= threshold).astype(np.float64) if scored else pf
        out["auc"] = roc_auc(yf.astype(np.int64), pf) if scored else None
        y_arr, p_arr = yf, labels_pred
    else:
        y_arr, p_arr = np.array([str(v) for v in ys]), np.array([str(v) for v in preds])
    out.update(accuracy=float((y_arr == p_arr).mean()), f1_macro=macro_f1(y_arr, p_arr))
    return out
