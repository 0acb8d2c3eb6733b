"""``python -m mlinfra.local_aws deploy|destroy``: the local AWS deploy (see the package docstring)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mlinfra-local", description="Deploy an mlinfra app into the embedded local AWS (moto)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    dep = sub.add_parser("deploy", help="synthesize, deploy every stack into a moto server, report, smoke test")
    dep.add_argument("--app-dir", type=Path, default=Path.cwd(), help="directory with cdk.json (default: .)")
    dep.add_argument("--env", default="local", help="environment of the configuration to deploy (default: local)")
    dep.add_argument("--keep", action="store_true", help="leave the emulator running afterwards")
    dep.add_argument("--json", action="store_true", help="print the report as JSON")
    des = sub.add_parser("destroy", help="destroy a kept local deployment and stop its emulator")
    des.add_argument("--app-dir", type=Path, default=Path.cwd())
    for p in (dep, des):
        p.add_argument("--workdir", type=Path, default=None, help="state and logs (default: APP_DIR/.local-aws)")
    args = parser.parse_args(argv)

    from mlinfra.local_aws.deploy import LocalDeploy, LocalDeployError, destroy

    if args.command == "destroy":
        return destroy(args.app_dir, workdir=args.workdir)
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else (lambda line: print(line, flush=True))
    try:
        # With --json, stdout carries the JSON report alone: anything else printed meanwhile (handler logs of
        # the smoke checks, say) goes to stderr.
        with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
            report = LocalDeploy(app_dir=args.app_dir, env_name=args.env, keep=args.keep, say=say,
                                 workdir=args.workdir).run()
    except LocalDeployError as exc:
        print(f"local deploy failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("local deploy interrupted: the emulator and the CDK CLI were stopped", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        from mlinfra.local_aws.report import render

        print(render(report))
    return 0 if report.state == "complete" and not report.smoke_failed else 1


if __name__ == "__main__":
    sys.exit(main())
