#!/usr/bin/env python3
"""The drift engine on 1 M captured records x 50 numeric (+2 categorical) features, side by side with Evidently.

    python scripts/bench_drift.py            # both, prints JSON figures (used by scripts/bench.py)
    python scripts/bench_drift.py ours DIR   # internal: one measured run of the drift job on DIR
    python scripts/bench_drift.py evidently  # internal: one measured run of Evidently (its own venv)

Same data on both sides: the baseline is ``tests/drift_synthetic.frame(200_000, seed=1)`` and the current window
``frame(1_000_000, seed=2, shift=True, new_category=True)`` (0.5 sigma mean shift in x03, x17, x41; 15% of
``colour`` an unseen category). Ours reads the window as SageMaker capture JSON Lines files (20 files of 50,000
lines, written to a temporary folder first, not timed) and does everything the Processing job does except
S3 I/O: parse, profile, compare, JSON report and HTML report. Evidently gets the same data already as pandas
DataFrames (its input; building them is not timed) and runs ``Report([DataDriftPreset()])``. Each side runs
in a fresh process; peak memory is that process's maximum resident set size (``ru_maxrss``), so it includes
the data each side holds. Evidently is installed only for the benchmark, into a throwaway venv
(``.bench/evidently-venv``, pinned ``evidently==0.7.23`` with ``pandas==2.3.3``; pandas 3 breaks its import).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
N_CURRENT = int(os.environ.get("BENCH_DRIFT_RECORDS", "1000000"))
N_BASELINE = 200_000
FILES = 20
EV_VENV = ROOT / ".bench" / "evidently-venv"
EV_PINS = ["evidently==0.7.23", "pandas==2.3.3"]


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(folder: str) -> dict:
    sys.path.insert(0, str(ROOT))
    from mlinfra.domain.drift import Baseline, CaptureParser, compare, render_html, report_json

    baseline = Baseline.from_json(Path(folder, "baseline.json").read_text())
    start = time.perf_counter()
    parser = CaptureParser(baseline.feature_order, {f.name: f.kind for f in baseline.features},
                           baseline.prediction.kind if baseline.prediction else "numeric")
    for path in sorted(Path(folder).glob("capture-*.jsonl")):
        parser.feed_text(path.read_text())
    data = parser.finish()
    parsed = time.perf_counter() - start
    report = compare(baseline, data)
    report_json(report)
    render_html(report)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "parse_seconds": parsed, "peak_mib": peak_mib(), "records": report["counts"]["records"],
            "drifted": report["summary"]["drifted_features"]}


def run_evidently() -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    import drift_synthetic as syn
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    ref = pd.DataFrame(syn.frame(N_BASELINE, 1))
    cur = pd.DataFrame(syn.frame(N_CURRENT, 2, shift=True, new_category=True))
    start = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
    result = snapshot.dict()
    seconds = time.perf_counter() - start
    drifted = sorted(m["config"]["column"] for m in result["metrics"]
                     if m["config"].get("type") == "evidently:metric_v2:ValueDrift" and m["value"] >= m["config"]["threshold"])
    return {"seconds": seconds, "peak_mib": peak_mib(), "records": len(cur), "drifted": drifted}


def prepare(folder: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from mlinfra.domain.drift import build_baseline
    from tests import drift_synthetic as syn

    base = syn.frame(N_BASELINE, 1)
    Path(folder, "baseline.json").write_text(build_baseline(base, predictions=syn.predictions(base)).to_json())
    cur = syn.frame(N_CURRENT, 2, shift=True, new_category=True)
    per_file = N_CURRENT // FILES
    for i in range(FILES):
        part = {k: v[i * per_file:(i + 1) * per_file] for k, v in cur.items()}
        Path(folder, f"capture-{i:02d}.jsonl").write_text("\n".join(syn.capture_lines(part, start=i * per_file)) + "\n")


def evidently_python() -> Path | None:
    py = EV_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(EV_VENV)], check=True)
        proc = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *EV_PINS],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"bench-drift: Evidently could not be installed (offline?): {proc.stderr[-500:]}", file=sys.stderr)
            return None
    return py


def main() -> dict:
    with tempfile.TemporaryDirectory(prefix="mlinfra-drift-bench-") as tmp:
        prepare(Path(tmp))
        ours = json.loads(subprocess.run([sys.executable, __file__, "ours", tmp], capture_output=True, text=True, check=True).stdout)
    print(f"bench-drift: ours {json.dumps(ours)}", file=sys.stderr, flush=True)
    out = {"records": N_CURRENT, "baseline_records": N_BASELINE, "features": 52, "ours": ours, "evidently": None}
    py = evidently_python()
    if py is not None:
        proc = subprocess.run([str(py), __file__, "evidently"], capture_output=True, text=True)
        if proc.returncode == 0:
            out["evidently"] = json.loads(proc.stdout.strip().splitlines()[-1])
        else:
            out["evidently_error"] = proc.stderr[-1000:]
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "ours":
        print(json.dumps(run_ours(sys.argv[2])))
    elif len(sys.argv) > 1 and sys.argv[1] == "evidently":
        print(json.dumps(run_evidently()))
    else:
        print(json.dumps(main(), indent=1))
