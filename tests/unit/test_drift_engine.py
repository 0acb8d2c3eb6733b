"""The drift engine on known answers, against scipy's reference statistics, and on bad input."""

from __future__ import annotations

import base64
import json
import sys

import numpy as np
import pytest
from scipy import spatial
from scipy import stats as sps

from mlinfra.domain.drift import (PREDICTION, Baseline, CaptureData, CaptureParser, Thresholds, build_baseline, compare,
                                  quality_metrics, render_html, report_json)
from mlinfra.domain.drift import stats
from mlinfra.domain.drift.profile import SKETCH_SIZE
from tests import drift_synthetic as syn


def parse(baseline: Baseline, lines: list[str], text: bool = True) -> CaptureData:
    p = CaptureParser(baseline.feature_order, {f.name: f.kind for f in baseline.features},
                      baseline.prediction.kind if baseline.prediction else "numeric")
    if text:
        p.feed_text("\n".join(lines))
    else:
        p.feed(lines)
    return p.finish()


@pytest.fixture(scope="module")
def baseline() -> Baseline:
    cols = syn.frame(20_000, 1)
    return Baseline.from_json(build_baseline(cols, predictions=syn.predictions(cols)).to_json())


def direct(cols: dict[str, np.ndarray]) -> CaptureData:
    """Capture data straight from columns (the parser is tested on its own below)."""
    n = len(cols["x00"])
    return CaptureData(columns=cols, predictions=syn.predictions(cols), inference_ids=[None] * n,
                       counters={"lines": n, "records": n}, new_columns={}, unparsable={}, content_types={"csv": n})


# ---- known answers -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["CSV", "BASE64"])
def test_shift_in_3_of_50_and_a_new_category_flag_exactly_those(baseline, encoding):
    lines = syn.capture_lines(syn.frame(10_000, 2, shift=True, new_category=True), encoding=encoding)
    report = compare(baseline, parse(baseline, lines))
    assert report["status"] == "drift"
    assert report["summary"]["drifted_features"] == sorted(syn.SHIFTED + ["colour"])
    assert report["features"]["colour"]["new_categories"] == {"purple": pytest.approx(1500, rel=0.1)}
    assert not report["summary"]["prediction_drifted"]
    assert report["counts"]["records"] == 10_000 and report["counts"]["malformed_lines"] == 0


@pytest.mark.slow
def test_identical_distributions_raise_no_alarm_in_99_of_100_seeds():
    alarms = 0
    for seed in range(100):
        cols = syn.frame(5_000, 1000 + seed)
        base = build_baseline(cols, predictions=syn.predictions(cols))
        report = compare(base, direct(syn.frame(5_000, 5000 + seed)))
        alarms += report["drift_detected"]
    assert alarms <= 1


def test_no_drift_without_change(baseline):
    report = compare(baseline, direct(syn.frame(10_000, 3)))
    assert report["status"] == "ok" and report["summary"]["drifted_count"] == 0


def test_report_is_deterministic(baseline):
    lines = syn.capture_lines(syn.frame(2_000, 4, shift=True))
    first = report_json(compare(baseline, parse(baseline, lines), window={"end": "t"}))
    assert report_json(compare(baseline, parse(baseline, list(lines)), window={"end": "t"})) == first
    again = Baseline.from_json(baseline.to_json())
    assert report_json(compare(again, parse(again, lines), window={"end": "t"})) == first


def test_fast_and_json_paths_agree(baseline):
    lines = syn.capture_lines(syn.frame(3_000, 5, shift=True, new_category=True))
    spaced = [json.dumps(json.loads(line)) for line in lines]  # not SageMaker's compact layout: JSON path
    fast, slow = parse(baseline, lines), parse(baseline, spaced, text=False)
    for name in baseline.feature_order:
        np.testing.assert_array_equal(fast.columns[name], slow.columns[name])
    np.testing.assert_array_equal(fast.predictions, slow.predictions)
    assert fast.inference_ids == slow.inference_ids and fast.counters == slow.counters


# ---- statistics against scipy ---------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_ks_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    a = np.sort(np.round(rng.normal(0, 1, 3000), 2))  # rounded: ties on both sides
    b = np.round(rng.normal(0.05 * seed, 1.1, 4000), 2)
    d, p = stats.ks_2samp(a, b)
    ref = sps.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(ref.statistic, abs=1e-12)
    en = np.sqrt(a.size * b.size / (a.size + b.size))
    assert p == pytest.approx(sps.kstwobign.sf(d * en), rel=1e-9, abs=1e-300)
    assert p == pytest.approx(ref.pvalue, rel=0.05, abs=1e-4)


def test_ks_on_a_quantile_sketch_is_within_its_resolution():
    rng = np.random.default_rng(7)
    a = np.sort(rng.normal(0, 1, 200_000))
    b = rng.normal(0.1, 1, 50_000)
    from mlinfra.domain.drift.profile import quantile_sketch
    d, _ = stats.ks_2samp(quantile_sketch(a), b, n_baseline=a.size)
    assert d == pytest.approx(sps.ks_2samp(a, b).statistic, abs=2.0 / SKETCH_SIZE)


@pytest.mark.parametrize("x", [0.3, 0.5, 1.0, 1.36, 2.0, 3.0])
def test_kolmogorov_sf_matches_scipy(x):
    assert stats.kolmogorov_sf(x) == pytest.approx(sps.kstwobign.sf(x), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("seed", range(5))
def test_chi2_and_js_match_scipy(seed):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 500, 6)
    cur = rng.integers(0, 500, 6)
    cur[0] = 0
    stat, p, dof = stats.chi2_contingency(base, cur)
    ref = sps.chi2_contingency(np.vstack([base, cur]), correction=False)
    assert (stat, dof) == (pytest.approx(ref.statistic, rel=1e-12), ref.dof)
    assert p == pytest.approx(ref.pvalue, rel=1e-8, abs=1e-300)
    assert stats.js_distance(base, cur) == pytest.approx(spatial.distance.jensenshannon(base, cur), rel=1e-12)


@pytest.mark.parametrize("dof,stat", [(1, 0.5), (3, 7.8), (10, 3.0), (50, 80.0), (199, 150.0)])
def test_chi2_sf_matches_scipy(dof, stat):
    assert stats.chi2_sf(stat, dof) == pytest.approx(sps.chi2.sf(stat, dof), rel=1e-9)


def test_psi_by_hand():
    e, a = np.array([0.5, 0.5]), np.array([0.25, 0.75])
    assert stats.psi(e, a) == pytest.approx((0.25 - 0.5) * np.log(0.5) + (0.75 - 0.5) * np.log(1.5))
    assert stats.psi(e, e) == 0.0


def test_two_proportion_matches_scipy():
    p = stats.two_proportion_pvalue(50, 1000, 80, 1000)
    table = np.array([[50, 950], [80, 920]])
    assert p == pytest.approx(sps.chi2_contingency(table, correction=False).pvalue, rel=1e-9)


def test_auc_and_f1_match_scipy():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400).astype(float)
    s = np.round(np.clip(y * 0.3 + rng.random(400) * 0.7, 0, 1), 2)
    ids = [f"i{i}" for i in range(400)]
    q = quality_metrics(ids, s, {f"i{i}": str(int(v)) for i, v in enumerate(y)})
    u = sps.mannwhitneyu(s[y == 1], s[y == 0]).statistic
    assert q["auc"] == pytest.approx(u / ((y == 1).sum() * (y == 0).sum()), rel=1e-12)
    assert q["joined"] == 400 and q["problem"] == "classification"
    pred = (s >= 0.5).astype(float)
    assert q["accuracy"] == pytest.approx((pred == y).mean())
    r = quality_metrics(ids[:3], np.array([1.0, 2.0, 4.0]), {"i0": "1", "i1": "3", "i2": "4"})
    assert (r["problem"], r["mae"], r["rmse"]) == ("regression", pytest.approx(1 / 3), pytest.approx(np.sqrt(1 / 3)))


# ---- bad input --------------------------------------------------------------------------------------------------

def capture(data: str, encoding: str = "CSV", ctype: str = "text/csv", out: str = "0.5") -> str:
    return json.dumps({"captureData": {"endpointInput": {"observedContentType": ctype, "mode": "INPUT", "data": data, "encoding": encoding},
                                       "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT", "data": out, "encoding": "CSV"}},
                       "eventMetadata": {"eventId": "e1"}, "eventVersion": "0"})


def test_malformed_lines_are_counted_never_raised(baseline):
    good = syn.capture_lines(syn.frame(600, 8))
    bad = ["{not json", "[]", '{"captureData": 3}', capture("!!!notbase64", "BASE64"), capture("1,2,3"),
           capture('{"instances": 5}', "JSON", "application/json"), "", "   "]
    data = parse(baseline, good + bad)
    report = compare(baseline, data)
    c = report["counts"]
    assert (c["malformed_lines"], c["malformed_payloads"], c["schema_mismatch_rows"], c["records"]) == (3, 2, 1, 600)
    assert report["status"] == "ok"


def test_json_payloads_new_missing_and_retyped_columns():
    cols = {"a": np.arange(1000.0), "b": np.array(["x", "y"] * 500, dtype=object), "c": np.arange(1000.0)}
    base = build_baseline(cols)
    lines = [capture(json.dumps({"a": i, "b": "x", "c": "text", "zz": 1}), "JSON", "application/json") for i in range(600)]
    lines += [capture(base64.b64encode(json.dumps([{"a": 1, "b": "y", "c": "t"}]).encode()).decode(), "BASE64", "application/json")]
    report = compare(base, parse(base, lines))
    assert report["schema"]["new_columns"] == {"zz": 600}
    assert report["schema"]["retyped_columns"] == ["c"]
    assert report["status"] == "drift" and report["summary"]["schema_changed"]
    assert report["counts"]["records"] == 601


def test_missing_column_is_a_schema_change():
    base = build_baseline({"a": np.arange(1000.0), "b": np.arange(1000.0)})
    lines = [capture(json.dumps({"a": i}), "JSON", "application/json") for i in range(600)]
    report = compare(base, parse(base, lines))
    assert report["schema"]["missing_columns"] == ["b"] and report["status"] == "drift"


def test_missing_rate_change_is_drift():
    base = build_baseline({"a": np.arange(2000.0), "b": np.arange(2000.0)})
    values = [f"{i if i % 4 else ''},{i}" for i in range(2000)]
    report = compare(base, parse(base, [capture(v) for v in values]))
    f = report["features"]["a"]
    assert f["missing_rate"] == 0.25 and f["drifted"] and "missing rate" in f["reasons"][0]


def test_empty_window_and_not_enough_data(baseline):
    empty = compare(baseline, parse(baseline, []))
    assert (empty["status"], empty["drift_detected"], empty["counts"]["records"]) == ("empty_window", False, 0)
    few = compare(baseline, parse(baseline, syn.capture_lines(syn.frame(100, 9, shift=True))))
    assert few["status"] == "not_enough_data" and few["summary"]["not_enough_data"] == sorted(baseline.feature_order)


def test_per_feature_thresholds(baseline):
    lines = syn.capture_lines(syn.frame(5_000, 2, shift=True))
    lax = {"features": {"x03": {"psi": 5.0, "ks": 1.0}}, "default": {"min_samples": 100}}
    report = compare(baseline, parse(baseline, lines), thresholds=lax)
    assert report["summary"]["drifted_features"] == ["x17", "x41"]


@pytest.mark.parametrize("spec,message", [
    ({"default": {"psi": -1}}, "thresholds: psi must be in (0, 10], got: -1"),
    ({"default": {"bogus": 1}}, "thresholds: unknown keys ['bogus']"),
    ({"featurez": {}}, "thresholds: unknown keys ['featurez'], allowed: ['default', 'features']"),
    ({"features": {"nope": {}}}, "thresholds.features: ['nope'] are not features of the baseline"),
])
def test_bad_thresholds_name_the_key(baseline, spec, message):
    with pytest.raises(ValueError) as err:
        compare(baseline, direct(syn.frame(10, 1)), thresholds=spec)
    assert str(err.value).startswith(message)


def test_bad_baseline_format():
    with pytest.raises(ValueError, match="baseline: format must be 'mlinfra.drift.baseline/1', got: 'x'"):
        Baseline.from_json('{"format": "x"}')


def test_html_has_a_chart_per_feature(baseline):
    report = compare(baseline, direct(syn.frame(2_000, 2, shift=True, new_category=True)))
    page = render_html(report)
    assert page.count("<svg") == len(baseline.features) + 1  # and the prediction
    assert "purple" in page and "x03" in page


def test_engine_imports_neither_cdk_nor_boto3():
    import subprocess
    code = ("import sys, mlinfra.domain.drift, mlinfra.domain.drift.job; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aws_cdk', 'boto3', 'botocore', 'jsii', 'scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_prediction_profile_is_in_the_baseline(baseline):
    assert baseline.prediction is not None and baseline.prediction.name == PREDICTION
    assert Thresholds().min_samples == 500


# ---- review fixes (issue 15 review) ------------------------------------------------------------------------------

def test_missing_rate_jump_is_drift_even_below_min_samples():
    """0% -> 97% missing on 10,000 records leaves 300 present values (< min_samples): still drift, not 'ok'."""
    base = build_baseline({"a": np.arange(10_000.0), "b": np.arange(10_000.0),
                           "c": np.array(["x", "y"] * 5_000, dtype=object)})
    rows = [f"{i if i % 100 < 3 else ''},{i},{('x', 'y')[i % 2] if i % 100 < 3 else ''}" for i in range(10_000)]
    report = compare(base, parse(base, [capture(r) for r in rows]))
    for name in ("a", "c"):
        f = report["features"][name]
        assert f["missing_rate"] == pytest.approx(0.97) and f["drifted"] and f["status"] == "drift", f
        assert "missing rate" in f["reasons"][0] and "min_samples" in f["reasons"][-1]
    assert report["status"] == "drift" and report["summary"]["drifted_features"] == ["a", "c"]


def test_blank_csv_numbers_are_missing_whichever_path_parses_the_chunk():
    base = build_baseline({"a": np.arange(1000.0) + 1, "b": np.array(["x", "y"] * 500, dtype=object)})
    clean = [capture(f"{i + 1}, {('x', 'y')[i % 2]} ") for i in range(600)]
    blank = [capture(f"{' ' if i % 10 == 0 else i + 1}, {('x', 'y')[i % 2]} ") for i in range(600)]
    mixed = parse(base, clean + blank)  # the clean chunk on the C reader, the blank one field by field
    a = mixed.columns["a"]
    assert not (a < 0).any(), "a blank field became a number"
    assert int(np.isnan(a).sum()) == 60 and mixed.unparsable.get("a", 0) == 0
    assert set(mixed.columns["b"].tolist()) == {"x", "y"}  # stripped on both paths
    report = compare(base, mixed)
    assert report["features"]["a"]["missing"] == 60


def test_many_categories_without_drift_raise_no_alarm():
    """200 categories, 2,000 records per window through the capture parser: JS alone is biased upwards."""
    cats = np.array([f"c{i:03d}" for i in range(200)], dtype=object)
    base_rng = np.random.default_rng(1234)
    base = build_baseline({"x": base_rng.normal(size=20_000), "k": cats[base_rng.integers(0, 200, 20_000)]})
    alarms = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        rows = [f"{x:.6f},{k}" for x, k in zip(rng.normal(size=2_000), cats[rng.integers(0, 200, 2_000)])]
        report = compare(base, parse(base, [capture(r) for r in rows]))
        alarms += report["features"]["k"]["drifted"]
    assert alarms <= 1, alarms


def test_many_categories_with_drift_still_alarm():
    cats = np.array([f"c{i:03d}" for i in range(200)], dtype=object)
    rng = np.random.default_rng(7)
    base = build_baseline({"x": rng.normal(size=20_000), "k": cats[rng.integers(0, 200, 20_000)]})
    rows = [f"{x:.6f},{k}" for x, k in zip(rng.normal(size=2_000), cats[rng.integers(0, 40, 2_000)])]  # 40 of 200
    f = compare(base, parse(base, [capture(r) for r in rows]))["features"]["k"]
    assert f["drifted"] and f["chi2_pvalue"] < 0.01 and "js" in f["reasons"][0]


def test_pool_sparse_keeps_expected_counts_at_least_5():
    b, c = stats.pool_sparse(np.array([1000, 1000, 3, 2, 1, 0]), np.array([100, 100, 1, 0, 0, 2]))
    table = np.vstack([b, c])
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    assert expected.min() >= 5 and table.sum() == 2209


def _stray_key_lines(n: int, stray: int) -> list[str]:
    return [capture(json.dumps({"a": i % 1000, **({"zz": 1} if i < stray else {})}), "JSON", "application/json")
            for i in range(n)]


def test_one_stray_key_is_not_a_schema_change():
    base = build_baseline({"a": np.arange(5_001.0) % 1000})
    report = compare(base, parse(base, _stray_key_lines(5_001, 1)))
    assert report["schema"]["new_columns"] == {"zz": 1} and report["schema"]["significant_new_columns"] == []
    assert not report["summary"]["schema_changed"] and report["status"] == "ok" and not report["drift_detected"]


def test_schema_change_is_reported_but_no_drift_event_unless_configured():
    base = build_baseline({"a": np.arange(5_000.0) % 1000})
    data = parse(base, _stray_key_lines(5_000, 500))  # zz in 10% of the records
    report = compare(base, data)
    assert report["schema"]["significant_new_columns"] == ["zz"] and report["summary"]["schema_changed"]
    assert report["status"] == "schema_change" and not report["drift_detected"]
    configured = compare(base, data, schema_drift=True)
    assert configured["status"] == "drift" and configured["drift_detected"]
