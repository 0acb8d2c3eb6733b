"""A Mermaid state diagram from an Amazon States Language definition (no CDK import).

``python -m mlinfra.asl_diagram`` regenerates the diagram block of ``docs/pipeline.md`` from the retrain
pipeline's reference definition (every option on); ``--check`` exits 1 when the document is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Mapping

BEGIN = "<!-- BEGIN GENERATED: retrain state diagram (python -m mlinfra.asl_diagram) -->"
END = "<!-- END GENERATED -->"
DOC = Path(__file__).resolve().parent.parent / "docs" / "pipeline.md"


def transitions(definition: Mapping[str, Any], failure_state: str | None = "RecordFailure") -> list[tuple[str, str, str]]:
    """(from, to, label) of every transition; Catch edges into ``failure_state`` are left out (noted once)."""
    edges: list[tuple[str, str, str]] = [("[*]", definition["StartAt"], "")]
    for name, state in definition["States"].items():
        if "Next" in state:
            edges.append((name, state["Next"], ""))
        for choice in state.get("Choices", []):
            edges.append((name, choice["Next"], _condition(choice)))
        if "Default" in state:
            edges.append((name, state["Default"], "otherwise"))
        for catch in state.get("Catch", []):
            if catch["Next"] != failure_state:
                edges.append((name, catch["Next"], "catch " + ", ".join(catch["ErrorEquals"])))
        if state["Type"] in ("Succeed", "Fail") or state.get("End"):
            edges.append((name, "[*]", ""))
    return edges


def _condition(rule: Mapping[str, Any]) -> str:
    if "And" in rule:
        return " and ".join(_condition(r) for r in rule["And"])
    var = rule.get("Variable", "").rsplit(".", 1)[-1]
    for op, value in rule.items():
        if op in ("Variable", "Next"):
            continue
        symbol = _OPERATORS.get(op, op)
        if op.endswith("Path"):
            value = str(value).rsplit(".", 1)[-1]
        return f"{var} {symbol} {str(value).lower() if isinstance(value, bool) else value}"
    return ""


_OPERATORS = {"StringEquals": "=", "BooleanEquals": "=", "NumericEquals": "=", "StringEqualsPath": "=",
              "NumericGreaterThan": ">", "NumericLessThan": "<", "IsPresent": "present:"}


def mermaid(definition: Mapping[str, Any]) -> str:
    lines = ["stateDiagram-v2"]
    for name, state in definition["States"].items():
        if state["Type"] == "Choice":
            lines.append(f"    state {name} <<choice>>")
    for src, dst, label in transitions(definition):
        lines.append(f"    {src} --> {dst}" + (f": {label}" if label else ""))
    tasks = [n for n, s in definition["States"].items() if s["Type"] == "Task" and any(c["Next"] == "RecordFailure" for c in s.get("Catch", []))]
    lines.append(f"    note right of RecordFailure: {len(tasks)} tasks catch States.ALL into RecordFailure")
    return "\n".join(lines)


def reference_definition() -> dict[str, Any]:
    """The retrain definition with every option on (preprocessing, evaluation job, manual approval, deploy)."""
    from mlinfra.retrain_definition import DefinitionSettings, PollSettings, build_definition

    job = {"RoleArn": "<job role>"}
    return build_definition(DefinitionSettings(
        pipeline_name="reference", validate_function="<validate>", lineage_function="<lineage>", evaluation_function="<evaluation>",
        gate_function="<gate>", table_name="<table>", topic_arn="<topic>", model_package_group="<group>", validate_settings={},
        training_request=job, training_poll=PollSettings(60, 100), max_training_attempts=2, metric_name="accuracy", direction="higher",
        threshold=0.8, min_improvement=0.0, inference_image="<image>", preprocessing_request=job, evaluation_request=job,
        manual_approval=True, approval_topic_arn="<approval topic>", approval_url="<approval url>",
        deploy={"endpoint_name": "<endpoint>", "variant_name": "AllTraffic", "instance_type": "ml.m5.large",
                "initial_instance_count": 1, "model_role_arn": "<model role>"},
    ))


def generated_block(definition: Mapping[str, Any] | None = None) -> str:
    return f"{BEGIN}\n```mermaid\n{mermaid(definition or reference_definition())}\n```\n{END}"


def update(doc: Path = DOC) -> bool:
    """Rewrite the generated block of ``doc``; True when it changed."""
    text = doc.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    new = text[:start] + generated_block() + text[end:]
    if new != text:
        doc.write_text(new)
    return new != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/pipeline.md is stale")
    args = parser.parse_args(argv)
    if args.check:
        text = DOC.read_text()
        ok = generated_block() in text
        print("docs/pipeline.md diagram is " + ("up to date" if ok else "STALE: run python -m mlinfra.asl_diagram"))
        return 0 if ok else 1
    print("updated" if update() else "unchanged", DOC)
    return 0


if __name__ == "__main__":
    sys.exit(main())
