"""Human-readable rendering of a local deploy report."""

from __future__ import annotations

from collections import Counter

from mlinfra.local_aws.deploy import DeployReport


def render(report: DeployReport) -> str:
    out: list[str] = []
    for stack in report.stacks:
        out.append("")
        out.append(f"Stack {stack.name}: {stack.created} created, {stack.skipped} skipped by the emulator")
        width = max([len(r.logical_id) for r in stack.resources] + [8])
        type_width = max([len(r.type) for r in stack.resources] + [4])
        out.append(f"  {'resource'.ljust(width)}  {'type'.ljust(type_width)}  status   detail")
        for r in sorted(stack.resources, key=lambda r: (r.status, r.type, r.logical_id)):
            detail = r.detail if len(r.detail) <= 70 else r.detail[:67] + "..."
            out.append(f"  {r.logical_id.ljust(width)}  {r.type.ljust(type_width)}  {r.status.ljust(7)}  {detail}")
            if r.note:
                out.append(f"  {''.ljust(width)}  {''.ljust(type_width)}  {'note'.ljust(7)}  {r.note}")
        outputs = {k: v for k, v in stack.outputs.items() if not k.startswith("ExportsOutput")}
        exports = len(stack.outputs) - len(outputs)
        if outputs or exports:
            out.append("  outputs:" + (f" (plus {exports} cross-stack exports)" if exports else ""))
            for key, value in sorted(outputs.items()):
                out.append(f"    {key} = {value}")
    out.append("")
    skipped_types = Counter(r.type for s in report.stacks for r in s.resources if r.status == "skipped")
    out.append(
        f"Summary: {len(report.stacks)} stacks, {report.created} resources created in the emulator, "
        f"{report.skipped} skipped (the emulator cannot create them; nothing skipped is reported as created)."
    )
    if skipped_types:
        out.append("Skipped types: " + ", ".join(f"{t} x{n}" for t, n in sorted(skipped_types.items())))
    from mlinfra.local_aws.emulator import PARTIAL_TYPES

    adjusted = [r for s in report.stacks for r in s.resources if r.note]
    if adjusted:
        out.append(f"Created with less than the template asks: {len(adjusted)} (see the 'note' lines above).")

    created_types = {r.type for s in report.stacks for r in s.resources if r.status == "created"}
    for type_, note in sorted(PARTIAL_TYPES.items()):
        if type_ in created_types:
            out.append(f"Partly emulated: {type_}: {note}.")
    failed = [s["check"] for s in report.smoke if not s["ok"]]
    out.append(
        f"Smoke checks: {len(report.smoke) - len(failed)} passed, {len(failed)} failed"
        + (f" ({', '.join(failed)})" if failed else "")
    )
    if report.kept:
        out.append(f"The emulator keeps running on {report.endpoint_url} (AWS_ENDPOINT_URL); `make destroy-local` stops it.")
    else:
        out.append("The emulator was stopped (run `make deploy-local KEEP=1` to keep it running for exploration).")
    return "\n".join(out)
