"""The dated price table `mlinfra cost` prices with: ``mlinfra/data/prices.csv`` (package data), one row per
(key, Region) with its USD list price, unit, source page and the date it was read.

A row with Region ``*`` applies in every Region that has no row of its own (only for prices the source page
states once for all commercial Regions). A key without a row for a Region is *missing*: the estimate reports
the resource as unknown with the key and Region to add, never as $0. Pure Python (no aws_cdk import).
"""

from __future__ import annotations

import csv
import dataclasses
import io
from importlib import resources
from pathlib import Path
from typing import Iterable

__all__ = ["Price", "PriceTable", "MissingPrice", "HOURS_PER_MONTH", "TABLE_RESOURCE"]

#: Hours in the month the estimate uses (AWS's own calculators use 730).
HOURS_PER_MONTH = 730.0
TABLE_RESOURCE = "prices.csv"
_FIELDS = ("key", "region", "usd", "unit", "source", "date", "note")


@dataclasses.dataclass(frozen=True)
class Price:
    key: str
    region: str
    usd: float
    unit: str
    source: str
    date: str
    note: str = ""


class MissingPrice(LookupError):
    """No row for ``key`` in ``region`` (and no ``*`` row)."""

    def __init__(self, key: str, region: str, table: "PriceTable") -> None:
        self.key, self.region = key, region
        super().__init__(
            f"no price for {key!r} in {region} in {table.origin}: add a row (key,region,usd,unit,source,date,note) "
            f"or run `mlinfra cost --refresh` with AWS credentials")


class PriceTable:
    """Rows by (key, region); ``get`` falls back to the ``*`` row."""

    def __init__(self, rows: Iterable[Price], origin: str = "mlinfra/data/prices.csv") -> None:
        self.origin = origin
        self._rows: dict[tuple[str, str], Price] = {}
        for row in rows:
            self._rows[(row.key, row.region)] = row

    @classmethod
    def shipped(cls) -> "PriceTable":
        text = resources.files("mlinfra.data").joinpath(TABLE_RESOURCE).read_text(encoding="utf-8")
        return cls(parse_rows(text))

    @classmethod
    def from_file(cls, path: str | Path) -> "PriceTable":
        return cls(parse_rows(Path(path).read_text(encoding="utf-8")), origin=str(path))

    def get(self, key: str, region: str) -> Price | None:
        return self._rows.get((key, region)) or self._rows.get((key, "*"))

    def require(self, key: str, region: str) -> Price:
        price = self.get(key, region)
        if price is None:
            raise MissingPrice(key, region, self)
        return price

    def rows(self) -> list[Price]:
        return sorted(self._rows.values(), key=lambda p: (p.key, p.region))

    def keys(self) -> set[str]:
        return {k for k, _ in self._rows}

    def with_rows(self, rows: Iterable[Price], origin: str | None = None) -> "PriceTable":
        """A copy with ``rows`` replacing those of the same (key, region)."""
        merged = {**self._rows, **{(r.key, r.region): r for r in rows}}
        return PriceTable(merged.values(), origin or self.origin)

    def dates(self) -> tuple[str, str]:
        dates = sorted(p.date for p in self._rows.values())
        return (dates[0], dates[-1]) if dates else ("", "")

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(_FIELDS)
        for p in self.rows():
            writer.writerow([p.key, p.region, f"{p.usd:g}", p.unit, p.source, p.date, p.note])
        return out.getvalue()


def parse_rows(text: str) -> list[Price]:
    """Rows of a price table; ``#`` lines are comments. Raises ValueError naming the line of a bad row."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    rows: list[Price] = []
    for number, rec in enumerate(csv.DictReader(lines), start=2):
        missing = [f for f in _FIELDS[:6] if not (rec.get(f) or "").strip()]
        if missing:
            raise ValueError(f"price table row {number}: missing {missing}, got: {rec}")
        try:
            usd = float(rec["usd"])
        except ValueError:
            raise ValueError(f"price table row {number}: usd must be a number, got: {rec['usd']!r}") from None
        if usd < 0:
            raise ValueError(f"price table row {number}: usd must be >= 0, got: {usd}")
        rows.append(Price(rec["key"].strip(), rec["region"].strip(), usd, rec["unit"].strip(), rec["source"].strip(),
                          rec["date"].strip(), (rec.get("note") or "").strip()))
    return rows
