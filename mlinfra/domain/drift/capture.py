"""Parse SageMaker data-capture files (JSON Lines) into columns, counting what cannot be read.

One captured request is one line::

    {"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
                                       "data": "5.1,3.5,red", "encoding": "CSV"},
                     "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT",
                                        "data": "0.93", "encoding": "CSV"}},
     "eventMetadata": {"eventId": "...", "inferenceId": "...", "inferenceTime": "2026-11-30T10:00:00Z"},
     "eventVersion": "0"}

``encoding`` is ``CSV``, ``JSON`` or ``BASE64`` (then ``observedContentType`` says what the decoded bytes are).
Payloads:

- CSV (``text/csv``): one record per line, no header, columns in the baseline's ``feature_order``. Quoted fields
  holding commas are not supported: such a row has the wrong number of fields and is counted in
  ``schema_mismatch_rows``.
- JSON (``application/json``, ``application/jsonlines``): an object (one record, keys are feature names), a list
  of objects or of lists (several records), or ``{"instances": [...]}`` / ``{"features": [...]}``. Keys the
  baseline does not know are counted per name in ``new_columns``.
- Output: a number or label per record (CSV: the first field of each line); JSON: a number, a list, or an object
  with ``predictions`` / ``scores`` / ``predicted_label`` / ``score``. A multi-record request whose output count
  differs from its input count keeps its inputs and drops its predictions (``prediction_mismatch``).

Nothing here raises on bad data: undecodable lines count as ``malformed_lines``, undecodable payloads as
``malformed_payloads``, and the report shows every counter.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import json
import re
import warnings
from collections import Counter
from typing import Any, Iterable

import numpy as np

from .profile import to_numeric

#: Rows converted to arrays at a time (bounds the transient Python strings to about CHUNK x features).
CHUNK_ROWS = 50_000
_STR = r'([^"\\]*(?:\\.[^"\\]*)*)'
#: SageMaker's own (compact) capture line with CSV or base64 payloads; anything else takes the JSON path.
_FAST_LINE = re.compile(
    r'^\{"captureData":\{"endpointInput":\{"observedContentType":"([^"]*)","mode":"INPUT","data":' + f'"{_STR}"'
    + r',"encoding":"(CSV|BASE64)"\},"endpointOutput":\{"observedContentType":"([^"]*)","mode":"OUTPUT","data":'
    + f'"{_STR}"' + r',"encoding":"(CSV|BASE64)"\}\},"eventMetadata":\{([^{}]*)\},"eventVersion":"[^"]*"\}[ \t\r]*$',
    re.M)
#: The same line when the file holds no backslash at all (no escapes to skip): a faster pattern for the bulk path.
_BULK_LINE = re.compile(_FAST_LINE.pattern.replace(_STR, r'([^"]*)'), re.M)
_INFERENCE_ID = re.compile(r'"inferenceId":"([^"]*)"')
_BLANK_FIELD = re.compile(r"(?:^|,)\s*(?:,|$)")
_EVENT_ID = re.compile(r'"eventId":"([^"]*)"')


@dataclasses.dataclass
class CaptureData:
    """Columns of the captured records (baseline order), their predictions and what could not be read."""

    columns: dict[str, np.ndarray]
    predictions: np.ndarray  # float64 (NaN = none) or str ("" = none)
    inference_ids: list[str | None]
    counters: dict[str, int]
    new_columns: dict[str, int]
    unparsable: dict[str, int]  # per numeric feature: present values that are not numbers
    content_types: dict[str, int]

    @property
    def records(self) -> int:
        return self.counters.get("records", 0)


class CaptureParser:
    """Feed capture lines (``feed``), then ``finish()`` once. Memory: the numeric columns as float64 plus one chunk."""

    def __init__(self, feature_order: list[str], kinds: dict[str, str], prediction_kind: str = "numeric") -> None:
        self.order = list(feature_order)
        self.index = {n: i for i, n in enumerate(self.order)}
        self.kinds = dict(kinds)
        self.prediction_kind = prediction_kind
        self.counters: Counter[str] = Counter()
        self.new_columns: Counter[str] = Counter()
        self.unparsable: Counter[str] = Counter()
        self.content_types: Counter[str] = Counter()
        self._csv_rows: list[str] = []
        self._json_rows: list[list[Any]] = []
        self._csv_preds: list[Any] = []
        self._json_preds: list[Any] = []
        self._csv_ids: list[str | None] = []
        self._json_ids: list[str | None] = []
        self._chunks: dict[str, list[np.ndarray]] = {n: [] for n in self.order}
        self._pred_chunks: list[np.ndarray] = []
        self._ids: list[str | None] = []

    # ---- lines -------------------------------------------------------------------------------------------
    def feed_text(self, text: str) -> None:
        """Feed one whole capture file. Lines in SageMaker's compact layout with CSV or base64 payloads take a
        regular-expression fast path; every other line (other key orders, JSON payloads, garbage) goes through
        :meth:`feed` and its full JSON parse. Both paths give the same result."""
        if self._feed_bulk(text):
            return
        pos = 0
        slow: list[str] = []
        for m in _FAST_LINE.finditer(text):
            if m.start() > pos:
                slow += text[pos:m.start()].splitlines()
            pos = m.end()
            ictype, idata, ienc, octype, odata, oenc, meta = m.groups()
            if "\\" in idata or "\\" in odata:  # escapes (multi-row payloads): decode the JSON strings
                idata, odata = json.loads(f'"{idata}"'), json.loads(f'"{odata}"')
            ids = _INFERENCE_ID.search(meta) or _EVENT_ID.search(meta)
            self.counters["lines"] += 1
            if ienc == "CSV" and oenc == "CSV" and "\n" not in idata and "\n" not in odata and "csv" in ictype:
                # one record per request, the common case: no decoding, no splitting
                self.counters["records"] += 1
                self.content_types["csv"] += 1
                self._csv_rows.append(idata)
                self._csv_preds.append(odata.split(",", 1)[0].strip())
                self._csv_ids.append(ids.group(1) if ids else None)
            else:
                self._add_request({"observedContentType": ictype, "data": idata, "encoding": ienc},
                                  {"observedContentType": octype, "data": odata, "encoding": oenc},
                                  ids.group(1) if ids else None)
            if len(self._csv_rows) >= CHUNK_ROWS:
                self._flush()
        if pos < len(text):
            slow += text[pos:].splitlines()
        if slow:
            self.feed(slow)

    def _feed_bulk(self, text: str) -> bool:
        """The whole file at once when every line is a single-record CSV capture in SageMaker's layout (the
        common case): one regular-expression pass in C, no per-line Python work. False: use the line paths."""
        if "\\" in text:
            return False
        matches = _BULK_LINE.findall(text)
        lines = sum(1 for line in text.splitlines() if line.strip())
        if not matches or len(matches) != lines:
            return False
        ictypes, idata, iencs, _, odata, oencs, metas = zip(*matches)
        if set(iencs) != {"CSV"} or set(oencs) != {"CSV"} or any("csv" not in c for c in set(ictypes)):
            return False
        ids = _INFERENCE_ID.findall("\n".join(metas))
        if len(ids) != len(metas):
            ids = [(m.group(1) if (m := _INFERENCE_ID.search(meta) or _EVENT_ID.search(meta)) else None) for meta in metas]
        self.counters["lines"] += len(matches)
        self.counters["records"] += len(matches)
        self.content_types["csv"] += len(matches)
        preds = [o.split(",", 1)[0].strip() for o in odata] if any("," in o for o in odata) else list(odata)
        for start in range(0, len(matches), CHUNK_ROWS):
            end = start + CHUNK_ROWS
            self._csv_rows += idata[start:end]
            self._csv_preds += preds[start:end]
            self._csv_ids += ids[start:end]
            self._flush()
        return True

    def feed(self, lines: Iterable[bytes | str]) -> None:
        for line in lines:
            if not line or not line.strip():
                continue
            self.counters["lines"] += 1
            try:
                doc = json.loads(line)
                capture = doc["captureData"]
                inp = capture["endpointInput"]
            except (ValueError, KeyError, TypeError):
                self.counters["malformed_lines"] += 1
                continue
            meta = doc.get("eventMetadata") if isinstance(doc, dict) else None
            event_id = None
            if isinstance(meta, dict):
                event_id = meta.get("inferenceId") or meta.get("eventId")
            self._add_request(inp, capture.get("endpointOutput") if isinstance(capture, dict) else None, event_id)
            if len(self._csv_rows) >= CHUNK_ROWS or len(self._json_rows) >= CHUNK_ROWS:
                self._flush()

    def _decode(self, part: Any) -> tuple[str, str] | None:
        """(content kind 'csv'|'json', text) of an input or output part, None when undecodable."""
        if not isinstance(part, dict) or not isinstance(part.get("data"), str):
            return None
        encoding = str(part.get("encoding", "")).upper()
        ctype = str(part.get("observedContentType", "")).split(";")[0].strip().lower()
        text = part["data"]
        if encoding == "BASE64":
            try:
                text = base64.b64decode(text, validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                return None
        if encoding == "JSON" or "json" in ctype:
            return "json", text
        if encoding == "CSV" or "csv" in ctype or ctype in ("", "text/plain"):
            return "csv", text
        return None

    def _add_request(self, inp: Any, out: Any, event_id: str | None) -> None:
        decoded = self._decode(inp)
        if decoded is None:
            self.counters["malformed_payloads"] += 1
            return
        kind, text = decoded
        self.content_types[f"{kind}"] += 1
        if kind == "csv":
            rows = [r for r in text.splitlines() if r.strip()]
        else:
            try:
                rows = self._json_records(json.loads(text))
            except ValueError:
                rows = None
            if rows is None:
                self.counters["malformed_payloads"] += 1
                return
        if not rows:
            self.counters["empty_payloads"] += 1
            return
        preds = self._predictions(out, len(rows))
        ids = [event_id] if len(rows) == 1 else [f"{event_id}-{i}" if event_id else None for i in range(len(rows))]
        self.counters["records"] += len(rows)
        if kind == "csv":
            self._csv_rows += rows
            self._csv_preds += preds
            self._csv_ids += ids
        else:
            self._json_rows += rows
            self._json_preds += preds
            self._json_ids += ids

    def _json_records(self, doc: Any) -> list[list[Any]] | None:
        if isinstance(doc, dict):
            for key in ("instances", "features", "inputs"):
                if key in doc:
                    return self._json_records(doc[key]) if isinstance(doc[key], list) else None
            records = [doc]
        elif isinstance(doc, list):
            records = doc if doc and isinstance(doc[0], (dict, list)) else [doc]
        else:
            return None
        out: list[list[Any]] = []
        for rec in records:
            if isinstance(rec, dict):
                row: list[Any] = [None] * len(self.order)
                for key, value in rec.items():
                    i = self.index.get(key)
                    if i is None:
                        self.new_columns[str(key)] += 1
                    else:
                        row[i] = value
                out.append(row)
            elif isinstance(rec, list):
                if len(rec) != len(self.order):
                    self.counters["schema_mismatch_rows"] += 1
                    continue
                out.append(list(rec))
            else:
                return None
        return out

    def _predictions(self, out: Any, n: int) -> list[Any]:
        none = [None] * n
        if out is None:
            return none
        decoded = self._decode(out)
        if decoded is None:
            self.counters["malformed_outputs"] += 1
            return none
        kind, text = decoded
        if kind == "csv":
            values: list[Any] = [line.split(",")[0].strip() for line in text.splitlines() if line.strip()]
        else:
            try:
                doc = json.loads(text)
            except ValueError:
                self.counters["malformed_outputs"] += 1
                return none
            if isinstance(doc, dict):
                for key in ("predictions", "scores", "predicted_label", "score", "prediction", "label"):
                    if key in doc:
                        doc = doc[key]
                        break
            values = doc if isinstance(doc, list) else [doc]
            values = [_scalar(v) for v in values]
        if len(values) != n:
            self.counters["prediction_mismatch"] += 1
            return none
        return values

    # ---- chunks ------------------------------------------------------------------------------------------
    def _flush(self) -> None:
        if self._csv_rows:
            self._flush_csv()
        if self._json_rows:
            self._flush_json()

    def _flush_csv(self) -> None:
        k = len(self.order)
        rows, preds, ids = self._csv_rows, self._csv_preds, self._csv_ids
        self._csv_rows, self._csv_preds, self._csv_ids = [], [], []
        counts = np.fromiter((r.count(",") for r in rows), dtype=np.int64, count=len(rows))
        good = counts == k - 1
        bad = int((~good).sum())
        if bad:
            self.counters["schema_mismatch_rows"] += bad
            self.counters["records"] -= bad
            keep = np.flatnonzero(good)
            rows = [rows[i] for i in keep]
            preds = [preds[i] for i in keep]
            ids = [ids[i] for i in keep]
        if not rows:
            return
        if not self._load_csv(rows):
            flat = ",".join(rows).split(",")
            for j, name in enumerate(self.order):
                self._add_column(name, flat[j::k])
        self._add_predictions(preds, ids)

    def _load_csv(self, rows: list[str]) -> bool:
        """numpy's C CSV reader on one chunk (every field present and numeric where numbers are expected);
        False when any field does not parse: then the field-by-field path decides and counts."""
        numeric = [j for j, n in enumerate(self.order) if self.kinds.get(n) != "categorical"]
        categorical = [j for j, n in enumerate(self.order) if self.kinds.get(n) == "categorical"]
        text = "\n".join(rows)
        try:
            nums = (np.loadtxt(io.StringIO(text), delimiter=",", usecols=numeric, dtype=np.float64, comments=None, ndmin=2)
                    if numeric else None)
            cats = (np.loadtxt(io.StringIO(text), delimiter=",", usecols=categorical, dtype=str, comments=None, ndmin=2)
                    if categorical else None)
        except ValueError:
            return False
        for i, j in enumerate(numeric):
            self._chunks[self.order[j]].append(np.ascontiguousarray(nums[:, i]))
        for i, j in enumerate(categorical):
            self._chunks[self.order[j]].append(np.char.strip(cats[:, i]) if cats.size else cats[:, i])
        return True

    def _flush_json(self) -> None:
        rows, preds, ids = self._json_rows, self._json_preds, self._json_ids
        self._json_rows, self._json_preds, self._json_ids = [], [], []
        for j, name in enumerate(self.order):
            self._add_column(name, [r[j] for r in rows])
        self._add_predictions(preds, ids)

    def _add_column(self, name: str, values: list[Any]) -> None:
        """Append one chunk of one column: strings ("" = missing) for categorical features, float64 (NaN) else."""
        from_csv = bool(values) and isinstance(values[0], str) and isinstance(values[-1], str)
        if self.kinds.get(name) == "categorical":
            if from_csv:  # stripped like the chunk reader's (_load_csv): the same values whichever path parses
                arr = np.char.strip(np.array(values, dtype=str))
            else:
                arr = np.array(["" if v is None else (str(int(v)) if isinstance(v, float) and v.is_integer() else str(v).strip())
                                for v in values], dtype=str)
            self._chunks[name].append(arr)
            return
        joined = ",".join(values) if from_csv else ""
        # np.fromstring reads a blank field (" ") as -1.0 and stops at an empty one: blanks take the element-wise
        # path, where they are missing (NaN), as in the chunk reader.
        if from_csv and not _BLANK_FIELD.search(joined):
            # numpy's C parser stops at the first field that is not a number; then the element-wise path decides
            try:  # numpy < 2.3 warns and returns the numbers read so far; later versions raise
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    parsed = np.fromstring(joined, dtype=np.float64, sep=",")
            except ValueError:
                parsed = np.zeros(0)
            if parsed.size == len(values):
                self._chunks[name].append(parsed)
                return
        arr, bad = to_numeric(np.array(values, dtype=object))
        self.unparsable[name] += bad
        self._chunks[name].append(arr)

    def _add_predictions(self, preds: list[Any], ids: list[str | None]) -> None:
        self._ids += ids
        if self.prediction_kind == "categorical":
            self._pred_chunks.append(np.array(["" if p is None else str(p) for p in preds], dtype=str))
        else:
            arr, _ = to_numeric(np.array(preds, dtype=object))
            self._pred_chunks.append(arr)

    def finish(self) -> CaptureData:
        self._flush()
        cols: dict[str, np.ndarray] = {}
        for name in self.order:
            chunks = self._chunks.pop(name)
            if not chunks:
                cols[name] = np.zeros(0, np.float64) if self.kinds.get(name) != "categorical" else np.array([], dtype=str)
            else:
                cols[name] = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        preds = (np.concatenate(self._pred_chunks) if self._pred_chunks
                 else (np.array([], dtype=str) if self.prediction_kind == "categorical" else np.zeros(0)))
        return CaptureData(columns=cols, predictions=preds, inference_ids=self._ids, counters=dict(self.counters),
                           new_columns=dict(self.new_columns), unparsable=dict(self.unparsable),
                           content_types=dict(self.content_types))


def _scalar(value: Any) -> Any:
    if isinstance(value, dict):
        for key in ("predicted_label", "score", "prediction", "label"):
            if key in value:
                return _scalar(value[key])
        return None
    if isinstance(value, list):
        return _scalar(value[0]) if value else None
    return value


def parse_ground_truth(lines: Iterable[bytes | str]) -> tuple[dict[str, str], int]:
    """``{inference id: label}`` from ground-truth JSON Lines, and the count of unreadable lines.

    Accepts SageMaker's ground-truth record ``{"groundTruthData": {"data": "1", "encoding": "CSV"},
    "eventMetadata": {"eventId": "<inference id>"}, "eventVersion": "0"}`` and the flat
    ``{"inferenceId": "...", "label": ...}``.
    """
    labels: dict[str, str] = {}
    bad = 0
    for line in lines:
        if not line or not line.strip():
            continue
        try:
            doc = json.loads(line)
            if "groundTruthData" in doc:
                data = doc["groundTruthData"]
                text = data["data"]
                if str(data.get("encoding", "")).upper() == "BASE64":
                    text = base64.b64decode(text).decode()
                label, key = str(text).strip(), doc["eventMetadata"].get("inferenceId") or doc["eventMetadata"]["eventId"]
            else:
                label, key = str(doc["label"]).strip(), doc["inferenceId"]
        except (ValueError, KeyError, TypeError, binascii.Error):
            bad += 1
            continue
        labels[str(key)] = label
    return labels, bad
