"""Synthetic training data and SageMaker capture lines with known drift (shared by tests and scripts/bench.py)."""

from __future__ import annotations

import base64
import json

import numpy as np

NUMERIC = [f"x{i:02d}" for i in range(50)]
CATEGORICAL = ["colour", "channel"]
COLOURS = np.array(["red", "green", "blue", "black"])
CHANNELS = np.array(["web", "app", "store"])
SHIFTED = ["x03", "x17", "x41"]


def frame(n: int, seed: int, *, shift: bool = False, new_category: bool = False) -> dict[str, np.ndarray]:
    """Columns: 50 numeric N(mu_i, sigma_i) features and two categoricals; with ``shift`` x03, x17, x41 move by
    0.5 sigma; with ``new_category`` 15% of ``colour`` becomes the unseen ``purple``."""
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    for i, name in enumerate(NUMERIC):
        mu, sigma = i * 0.5, 1.0 + (i % 5)
        x = rng.normal(mu, sigma, n)
        if shift and name in SHIFTED:
            x = x + 0.5 * sigma
        cols[name] = np.round(x, 4)
    colour = COLOURS[rng.choice(4, n, p=[0.4, 0.3, 0.2, 0.1])]
    if new_category:
        colour = np.where(rng.random(n) < 0.15, "purple", colour)
    cols["colour"] = colour
    cols["channel"] = CHANNELS[rng.choice(3, n, p=[0.5, 0.3, 0.2])]
    return cols


def predictions(cols: dict[str, np.ndarray]) -> np.ndarray:
    """A score from features that never drift (so prediction drift stays off in the known-answer tests)."""
    z = 0.3 * (cols["x00"] - 0.0) - 0.2 * (cols["x10"] - 5.0) / 1.0
    return np.round(1 / (1 + np.exp(-z)), 4)


def capture_lines(cols: dict[str, np.ndarray], *, encoding: str = "CSV", start: int = 0) -> list[str]:
    """One SageMaker capture line per record (CSV payloads, base64 when ``encoding='BASE64'``)."""
    names = NUMERIC + CATEGORICAL
    n = len(cols[names[0]])
    text_cols = [cols[c].astype(str) for c in names]
    rows = [",".join(vals) for vals in zip(*text_cols)]
    preds = predictions(cols).astype(str)
    lines = []
    for i in range(n):
        data, out = rows[i], preds[i]
        if encoding == "BASE64":
            data = base64.b64encode(data.encode()).decode()
            out = base64.b64encode(out.encode()).decode()
        lines.append(json.dumps({
            "captureData": {
                "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": data, "encoding": encoding},
                "endpointOutput": {"observedContentType": "text/csv; charset=utf-8", "mode": "OUTPUT", "data": out,
                                   "encoding": encoding}},
            "eventMetadata": {"eventId": f"e-{start + i}", "inferenceId": f"i-{start + i}",
                              "inferenceTime": "2026-11-30T10:00:00Z"},
            "eventVersion": "0"}, separators=(",", ":")))
    return lines


def training_csv(cols: dict[str, np.ndarray]) -> str:
    names = NUMERIC + CATEGORICAL
    rows = [",".join(vals) for vals in zip(*[cols[c].astype(str) for c in names])]
    return ",".join(names) + "\n" + "\n".join(rows) + "\n"
