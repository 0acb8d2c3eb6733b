"""Human-readable rendering of a local deploy report."""

from __future__ import annotations

from collections import Counter

from mlinfra.local_aws.deploy import CONDITION_FALSE, CREATED, CREATED_API, DeployReport


def render(report: DeployReport) -> str:
    out: list[str] = []
    for stack in report.stacks:
        out.append("")
        out.append(f"Stack {stack.name} [{stack.outcome}]: {stack.count(CREATED)} created, "
                   f"{stack.count(CREATED_API)} created (API), {stack.skipped} not created"
                   + (f", {stack.count(CONDITION_FALSE)} condition false" if stack.count(CONDITION_FALSE) else ""))
        if stack.error:
            out.append(f"  error: {stack.error}")
        width = max([len(r.logical_id) for r in stack.resources] + [8])
        type_width = max([len(r.type) for r in stack.resources] + [4])
        out.append(f"  {'resource'.ljust(width)}  {'type'.ljust(type_width)}  status / detail")
        for r in sorted(stack.resources, key=lambda r: (r.status, r.type, r.logical_id)):
            detail = r.detail if len(r.detail) <= 90 else r.detail[:87] + "..."
            out.append(f"  {r.logical_id.ljust(width)}  {r.type.ljust(type_width)}  {r.status}: {detail}")
            pad = f"  {''.ljust(width)}  {''.ljust(type_width)}  "
            if r.read_back:
                out.append(f"{pad}read back: {r.read_back}")
            if r.note:
                out.append(f"{pad}note: {r.note}")
        outputs = {k: v for k, v in stack.outputs.items() if not k.startswith("ExportsOutput")}
        exports = len(stack.outputs) - len(outputs)
        if outputs or exports:
            out.append("  outputs:" + (f" (plus {exports} cross-stack exports)" if exports else ""))
            for key, value in sorted(outputs.items()):
                out.append(f"    {key} = {value}")
    out.append("")
    not_created = Counter(r.type for s in report.stacks for r in s.resources
                          if not r.is_created and r.status != CONDITION_FALSE)
    out.append(
        f"Summary: {len(report.stacks)} stacks ({sum(s.outcome == 'deployed' for s in report.stacks)} deployed), "
        f"{report.created} resources created ({report.created_api} of them through a service API), "
        f"{report.skipped} not created, created share {report.created_share:.0%}. Nothing not created is "
        "reported as created; every 'created (API)' resource was read back."
    )
    if not_created:
        out.append("Not created, by type: " + ", ".join(f"{t} x{n}" for t, n in sorted(not_created.items())))
    noted = sum(bool(r.note) for s in report.stacks for r in s.resources)
    if noted:
        out.append(f"Created with differences from the template: {noted} (see the 'note' lines above).")
    failed = report.smoke_failed
    passed = sum(s["status"] == "passed" for s in report.smoke)
    na = sum(s["status"] == "not applicable" for s in report.smoke)
    out.append(f"Smoke checks: {passed} passed, {len(failed)} failed, {na} not applicable"
               + (f" (failed: {', '.join(failed)})" if failed else ""))
    out.append(f"Run {report.run_id}: {report.state}" + (f" ({report.error})" if report.error else ""))
    if report.kept:
        out.append(f"The emulator keeps running on {report.endpoint_url} (AWS_ENDPOINT_URL); "
                   "`mlinfra destroy-local` (make destroy-local) stops it.")
    else:
        out.append("The emulator was stopped (--keep / KEEP=1 keeps it running for exploration).")
    return "\n".join(out)
