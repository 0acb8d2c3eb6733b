"""Drift statistics, vectorized with numpy (no scipy at run time; tests compare each with scipy).

- :func:`psi`: population stability index over the baseline's quantile bins.
- :func:`ks_2samp`: two-sample Kolmogorov-Smirnov statistic (exactly scipy's ``ks_2samp`` statistic) and its
  asymptotic p-value (the Kolmogorov distribution, scipy's ``kstwobign.sf`` of ``D * sqrt(n m / (n + m))``).
- :func:`chi2_contingency`: chi-square test of homogeneity of two count vectors (scipy's ``chi2_contingency``
  on a 2 x k table without Yates' correction), p-value from the regularized upper incomplete gamma function.
- :func:`js_distance`: Jensen-Shannon distance (scipy's ``spatial.distance.jensenshannon``, natural log).
"""

from __future__ import annotations

import math

import numpy as np

#: Smoothing of empty bins in PSI (a bin empty on one side would make the index infinite).
PSI_EPSILON = 1e-4


def psi(expected: np.ndarray, actual: np.ndarray, epsilon: float = PSI_EPSILON) -> float:
    """PSI = sum((a - e) * ln(a / e)) over bins, both given as counts or proportions (normalized here)."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.sum() <= 0 or a.sum() <= 0:
        return float("nan")
    e = np.clip(e / e.sum(), epsilon, None)
    a = np.clip(a / a.sum(), epsilon, None)
    return float(np.sum((a - e) * np.log(a / e)))


def kolmogorov_sf(x: float) -> float:
    """Survival function of the Kolmogorov distribution: 2 sum_{k>=1} (-1)^(k-1) exp(-2 k^2 x^2)."""
    if x <= 0:
        return 1.0
    if x < 0.27:  # the alternating series converges slowly there; the value is 1 to double precision
        return 1.0
    k = np.arange(1, 101, dtype=np.float64)
    terms = np.exp(-2.0 * k * k * x * x) * np.where(k % 2 == 1, 1.0, -1.0)
    return float(min(1.0, max(0.0, 2.0 * terms.sum())))


def ks_2samp(baseline_sorted: np.ndarray, current: np.ndarray, n_baseline: int | None = None,
             current_sorted: bool = False) -> tuple[float, float]:
    """(D, asymptotic p-value) between a sorted baseline sample and the current values.

    ``baseline_sorted`` may be a quantile sketch of a larger baseline (``n_baseline`` values): D is then exact up
    to the sketch's resolution (1 / its size) and the p-value uses the real sample sizes.
    """
    a = np.asarray(baseline_sorted, dtype=np.float64)
    b = np.asarray(current, dtype=np.float64)
    if not current_sorted:
        b = np.sort(b)
    n, m = a.size, b.size
    if n == 0 or m == 0:
        return float("nan"), float("nan")
    # The ECDFs differ most at a data point of either sample (scipy evaluates both ECDFs on the union).
    d_a = np.abs(np.searchsorted(a, a, side="right") / n - np.searchsorted(b, a, side="right") / m).max()
    d_b = np.abs(np.searchsorted(a, b, side="right") / n - np.searchsorted(b, b, side="right") / m).max()
    d = float(max(d_a, d_b))
    nb = n_baseline or n
    en = math.sqrt(nb * m / (nb + m))
    return d, kolmogorov_sf(d * en)


def _gammaincc(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x) (series below a + 1, continued fraction above)."""
    if x <= 0:
        return 1.0
    if a <= 0:
        return 0.0
    gln = math.lgamma(a)
    if x < a + 1.0:
        ap, total, delta = a, 1.0 / a, 1.0 / a
        for _ in range(10_000):
            ap += 1.0
            delta *= x / ap
            total += delta
            if abs(delta) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(-x + a * math.log(x) - gln))
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-15:
            break
    return min(1.0, math.exp(-x + a * math.log(x) - gln) * h)


def chi2_sf(stat: float, dof: int) -> float:
    return _gammaincc(dof / 2.0, stat / 2.0) if dof > 0 else float("nan")


def chi2_contingency(baseline_counts: np.ndarray, current_counts: np.ndarray) -> tuple[float, float, int]:
    """(chi-square, p-value, degrees of freedom) of the 2 x k table [baseline; current] (categories seen on
    either side; columns empty on both sides are dropped, as a contingency test needs)."""
    table = np.vstack([np.asarray(baseline_counts, np.float64), np.asarray(current_counts, np.float64)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0, 0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    stat = float(((table - expected) ** 2 / expected).sum())
    dof = table.shape[1] - 1
    return stat, chi2_sf(stat, dof), dof


def pool_sparse(baseline_counts: np.ndarray, current_counts: np.ndarray, min_expected: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """Pool the categories whose expected count (under homogeneity) is below ``min_expected`` on either side
    into one column, so the chi-square approximation holds (Cochran's rule); a pooled column still too small
    joins the smallest remaining category."""
    table = np.vstack([np.asarray(baseline_counts, np.float64), np.asarray(current_counts, np.float64)])
    table = table[:, table.sum(axis=0) > 0]
    total = table.sum()
    if table.shape[1] < 2 or total <= 0 or (table.sum(axis=1) == 0).any():
        return table[0], table[1]
    rows = table.sum(axis=1, keepdims=True) / total
    sparse = (rows * table.sum(axis=0, keepdims=True)).min(axis=0) < min_expected
    if not sparse.any():
        return table[0], table[1]
    kept, pooled = table[:, ~sparse], table[:, sparse].sum(axis=1, keepdims=True)
    if kept.shape[1] and (rows * pooled.sum()).min() < min_expected:
        smallest = int(np.argmin(kept.sum(axis=0)))
        kept = kept.copy()
        kept[:, smallest:smallest + 1] += pooled
    else:
        kept = np.hstack([kept, pooled])
    return kept[0], kept[1]


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance (natural log) of two count or probability vectors."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return float("nan")
    p = p / p.sum()
    q = q / q.sum()
    m = (p + q) / 2.0

    def kl(x: np.ndarray) -> float:
        mask = x > 0
        return float(np.sum(x[mask] * np.log(x[mask] / m[mask])))

    return float(math.sqrt(max(0.0, (kl(p) + kl(q)) / 2.0)))


def two_proportion_pvalue(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p-value of a difference of two proportions (pooled z test)."""
    if n1 == 0 or n2 == 0:
        return float("nan")
    p = (k1 + k2) / (n1 + n2)
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0 if k1 / n1 == k2 / n2 else 0.0
    z = abs(k1 / n1 - k2 / n2) / se
    return math.erfc(z / math.sqrt(2))
