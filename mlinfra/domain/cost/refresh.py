"""``mlinfra cost --refresh``: current on-demand prices from the AWS Price List Query API (``pricing:GetProducts``).

Rows this module knows how to query (EC2 instance types, SageMaker hosting instances, NAT gateway-hours and
interface endpoint-hours) are replaced by the API's price, dated today, with the API as source; every other row
is kept from the table with its own date. A row the API does not answer (no product, an ambiguous answer, no
credentials) is kept too, and a note says so. The Price List API is served from us-east-1 (and a few other
Regions) whatever Region is priced: https://docs.aws.amazon.com/awsaccountbilling/latest/aboutv2/using-price-list-query-api.html
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any, Callable, Iterable

from mlinfra.domain.cost.prices import Price, PriceTable

__all__ = ["refresh_table", "query_for", "SOURCE"]

SOURCE = "AWS Price List Query API (pricing:GetProducts)"

Query = tuple[str, list[dict[str, str]], Callable[[dict[str, Any]], bool]]


def _term(field: str, value: str) -> dict[str, str]:
    return {"Type": "TERM_MATCH", "Field": field, "Value": value}


def query_for(key: str, region: str) -> Query | None:
    """(ServiceCode, filters, client-side product predicate) for a price key, or None when not refreshable."""
    if key.startswith("ec2.") and key.count(".") == 2 and not key.startswith(("ec2.nat_", "ec2.vpc_", "ec2.public")):
        itype = key.removeprefix("ec2.")
        return ("AmazonEC2", [_term("instanceType", itype), _term("regionCode", region), _term("operatingSystem", "Linux"),
                              _term("tenancy", "Shared"), _term("preInstalledSw", "NA"), _term("capacitystatus", "Used")],
                lambda attrs: True)
    if key.startswith("sagemaker.hosting."):
        itype = key.removeprefix("sagemaker.hosting.")
        return ("AmazonSageMaker", [_term("instanceName", itype), _term("regionCode", region)],
                lambda attrs: "Host:" in attrs.get("usagetype", "") and "Async" not in attrs.get("usagetype", ""))
    if key == "ec2.nat_gateway":
        return ("AmazonEC2", [_term("productFamily", "NAT Gateway"), _term("regionCode", region)],
                lambda attrs: attrs.get("usagetype", "").endswith("NatGateway-Hours"))
    if key == "ec2.vpc_endpoint.interface":
        return ("AmazonVPC", [_term("regionCode", region)],
                lambda attrs: attrs.get("usagetype", "").endswith("VpcEndpoint-Hours"))
    return None


def _on_demand_usd(item: dict[str, Any]) -> float | None:
    for offer in (item.get("terms", {}).get("OnDemand") or {}).values():
        for dim in (offer.get("priceDimensions") or {}).values():
            usd = (dim.get("pricePerUnit") or {}).get("USD")
            if usd is not None:
                return float(usd)
    return None


def _fetch(client: Any, service: str, filters: list[dict[str, str]]) -> Iterable[dict[str, Any]]:
    token = None
    while True:
        kwargs: dict[str, Any] = {"ServiceCode": service, "Filters": filters, "FormatVersion": "aws_v1", "MaxResults": 100}
        if token:
            kwargs["NextToken"] = token
        page = client.get_products(**kwargs)
        for raw in page.get("PriceList", []):
            yield json.loads(raw) if isinstance(raw, str) else raw
        token = page.get("NextToken")
        if not token:
            return


def refresh_table(table: PriceTable, *, regions: set[str] | None = None, client: Any = None,
                  today: str | None = None) -> tuple[PriceTable, list[str]]:
    """A copy of ``table`` with the refreshable rows (of ``regions``, or all) replaced by current API prices,
    and notes on every row kept as it was."""
    today = today or datetime.date.today().isoformat()
    notes: list[str] = []
    if client is None:
        try:
            import boto3

            client = boto3.client("pricing", region_name="us-east-1")
        except Exception as exc:  # noqa: BLE001 - no boto3 or no configuration: keep the table, say why
            return table, [f"--refresh: no Price List API client ({exc}); the shipped table is used"]
    fresh: list[Price] = []
    for row in table.rows():
        if row.region == "*" or (regions and row.region not in regions):
            continue
        query = query_for(row.key, row.region)
        if query is None:
            continue
        service, filters, keep = query
        try:
            found = {_on_demand_usd(item) for item in _fetch(client, service, filters)
                     if keep(item.get("product", {}).get("attributes", {}))}
        except Exception as exc:  # noqa: BLE001 - an API error keeps the row, with the reason
            notes.append(f"{row.key} ({row.region}): kept the table's {row.date} price, the API failed: {exc}")
            continue
        found.discard(None)
        found.discard(0.0)
        if len(found) != 1:
            notes.append(f"{row.key} ({row.region}): kept the table's {row.date} price, the API answered "
                         f"{sorted(found) or 'no product'}")
            continue
        fresh.append(dataclasses.replace(row, usd=found.pop(), source=SOURCE, date=today,
                                         note=f"refreshed; table had {row.usd:g} ({row.date})"))
    notes.append(f"--refresh: {len(fresh)} row(s) updated from the Price List API")
    return table.with_rows(fresh, origin=f"{table.origin} + Price List API {today}"), notes
