"""The ``mlinfra`` command: validate a configuration, scaffold an app, deploy it locally, plan and size.

    mlinfra validate config/platform.yaml [--env prod] [--json]
    mlinfra init my-platform [--ci github|pipelines] [--prefix NAME]
    mlinfra schema [--output config/platform.schema.json]
    mlinfra deploy-local [--app-dir DIR] [--env local] [--keep] [--json]
    mlinfra destroy-local [--app-dir DIR]
    mlinfra plan-transfer ...      (from mlinfra.domain.transfer_planner, when installed)
    mlinfra size-cache ...         (from mlinfra.domain.lustre_sizing, when installed)
    mlinfra cost ...               (from mlinfra.domain.cost.cli: idle and per-use cost of a synthesized app)
    mlinfra approve --function F --token T --decision approve|reject --reviewer R   (mlinfra.approvals)

Exit codes: 0 success, 1 a command failed (deploy error, missing optional module), 2 usage or
configuration errors (every configuration error is printed at once; a bad argument is named, never a
traceback), 141 the reader closed the output pipe (``mlinfra ... | head``: nothing printed on stderr).
``init`` writes the whole app or nothing: it renders into a temporary folder beside the target and moves it
into place, so an unwritable or full target leaves no half-written app.

Fast start: ``validate``, ``init``, ``schema``, ``plan-transfer`` and ``size-cache`` never import ``aws_cdk`` (no jsii).

Plug-in contract: a module that adds a subcommand exposes ``register_cli(subparsers)``; it adds its parser
with ``subparsers.add_parser(name, help=...)`` and sets ``func`` (``parser.set_defaults(func=run)``) to a
callable ``run(args) -> int``. Its parser should accept ``--json`` where machine-readable output makes sense.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from mlinfra import __version__

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PIPE_CLOSED = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away

#: Optional subcommands contributed by other modules: (subcommand, module).
PLUGINS: tuple[tuple[str, str], ...] = (
    ("plan-transfer", "mlinfra.domain.transfer_planner"),
    ("size-cache", "mlinfra.domain.lustre_sizing"),
    ("approve", "mlinfra.approvals"),
    ("cost", "mlinfra.domain.cost.cli"),
)

#: Stacks every environment deploys, before the capability sections add theirs.
CORE_STACKS: tuple[str, ...] = ("network", "data-lake")


# --------------------------------------------------------------------------------------------------
# validate
# --------------------------------------------------------------------------------------------------


def planned_stacks(cfg: Any) -> list[str]:
    """Stack names (``<prefix>-<env>-<suffix>``) the configuration deploys, derived without CDK.

    Core stacks, then each enabled capability section (a section with ``enabled: true``), then the delivery
    pipeline, the vending portfolio and one stack per team.
    """
    suffixes = list(CORE_STACKS)
    skip = {"network", "data_lake", "delivery", "vending"}
    for field in dataclasses.fields(cfg):
        section = getattr(cfg, field.name)
        if field.name in skip or not dataclasses.is_dataclass(section):
            continue
        if getattr(section, "enabled", False):
            suffixes.append(field.name.replace("_", "-"))
    delivery = getattr(cfg, "delivery", None)
    if delivery is not None and delivery.enabled:
        suffixes.append("delivery")
    if delivery is not None and delivery.github is not None:
        suffixes.append("github-deploy")
    vending = getattr(cfg, "vending", None)
    if vending is not None and vending.teams:
        if vending.service_catalog:
            suffixes.append("vending")
        suffixes.extend(f"team-{t.name}" for t in vending.teams)
    return [cfg.stack_name(s) for s in suffixes]


def summarize(cfg: Any) -> dict[str, Any]:
    """The key settings of one environment, as plain data (printed as text or JSON)."""
    net = cfg.network
    summary: dict[str, Any] = {
        "environment": cfg.env_name,
        "target": cfg.target,
        "account": cfg.account,
        "region": cfg.region,
        "production": cfg.is_production,
        "stacks": planned_stacks(cfg),
        "network": {"vpc_id": net.vpc_id} if net.vpc_id else {
            "cidr": net.cidr, "azs": cfg.azs[: net.max_azs], "nat_gateways": net.nat_gateways,
        },
        "data_lake": {"encryption": cfg.data_lake.encryption, "glue_zones": cfg.data_lake.glue_zones},
        "tags": cfg.all_tags,
    }
    delivery = getattr(cfg, "delivery", None)
    if delivery is not None and delivery.enabled:
        summary["delivery"] = {
            "source": delivery.source,
            "repository": delivery.repository if delivery.source == "codeconnections" else delivery.source_bucket,
            "branch": delivery.branch,
            "stages": delivery.stages,
            "approval_before": delivery.approval_before,
        }
    vending = getattr(cfg, "vending", None)
    if vending is not None and vending.teams:
        summary["teams"] = [
            {
                "name": t.name,
                "cost_centre": t.cost_centre,
                "instance_families": t.instance_families,
                "max_vcpus": t.max_vcpus,
                "monthly_budget_usd": t.monthly_budget_usd,
                "write_prefixes": t.write_prefixes,
            }
            for t in vending.teams
        ]
    return summary


def _format_summary(s: dict[str, Any]) -> str:
    where = f"account {s['account'] or '(any)'}, {s['region']}"
    lines = [f"{s['environment']}: OK  ({s['target']}, {where}{', production' if s['production'] else ''})"]
    net = s["network"]
    lines.append("  network:   " + (f"imported {net['vpc_id']}" if "vpc_id" in net else
                                    f"{net['cidr']} over {', '.join(net['azs'])}, {net['nat_gateways']} NAT gateway(s)"))
    lines.append(f"  data lake: {s['data_lake']['encryption']} encryption, Glue zones {', '.join(s['data_lake']['glue_zones'])}")
    if "delivery" in s:
        d = s["delivery"]
        stages = " -> ".join(("[approval] " if st in d["approval_before"] else "") + st for st in d["stages"])
        lines.append(f"  delivery:  {d['source']} {d['repository']}@{d['branch']}: {stages}")
    for t in s.get("teams", []):
        lines.append(
            f"  team {t['name']}: {', '.join(t['instance_families'])} up to {t['max_vcpus']} vCPUs, "
            f"${t['monthly_budget_usd']:g}/month, writes {', '.join(t['write_prefixes']) or '(nothing)'}"
        )
    lines.append("  stacks:    " + ", ".join(s["stacks"]))
    return "\n".join(lines)


def cmd_validate(args: argparse.Namespace) -> int:
    from mlinfra.config import ConfigError, load_config_file

    path = Path(args.config)
    if not path.is_file():
        return _fail(args, f"configuration file not found: {path}", EXIT_USAGE)
    try:
        envs = [args.env] if args.env else _environment_names(path)
    except ConfigError as exc:
        return _report_errors(args, {"<file>": exc.errors})
    if not envs:
        return _report_errors(args, {"<file>": ["environments: the file defines no environment"]})
    summaries: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for env in envs:
        try:
            summaries[env] = summarize(load_config_file(path, env))
        except ConfigError as exc:
            errors[env] = exc.errors
    if errors:
        return _report_errors(args, errors, summaries)
    if args.json:
        print(json.dumps({"valid": True, "config": str(path), "environments": summaries}, indent=2))
    else:
        print(f"{path}: {len(envs)} environment(s) valid")
        for s in summaries.values():
            print(_format_summary(s))
    return EXIT_OK


def _environment_names(path: Path) -> list[str]:
    import yaml

    from mlinfra.config import ConfigError

    try:
        document = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError([f"not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}"], str(path)) from exc
    if not isinstance(document, dict) or not isinstance(document.get("environments") or {}, dict):
        raise ConfigError(["<root>: expected a mapping with 'defaults' and 'environments'"], str(path))
    return list((document.get("environments") or {}).keys())


def _report_errors(args: argparse.Namespace, errors: dict[str, list[str]], summaries: dict | None = None) -> int:
    count = sum(len(v) for v in errors.values())
    if args.json:
        print(json.dumps({"valid": False, "config": str(args.config), "errors": errors,
                          "environments": summaries or {}}, indent=2))
    else:
        print(f"{args.config}: {count} error(s)", file=sys.stderr)
        for env, messages in errors.items():
            for message in messages:
                print(f"  [{env}] {message}", file=sys.stderr)
    return EXIT_USAGE


# --------------------------------------------------------------------------------------------------
# init
# --------------------------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from mlinfra.scaffold import ScaffoldError, scaffold

    target = Path(args.dir)
    try:
        written = _scaffold_atomically(scaffold, target, prefix=args.prefix, ci=args.ci, force=args.force)
    except ScaffoldError as exc:
        return _fail(args, str(exc), EXIT_USAGE)
    except OSError as exc:
        return _fail(args, f"DIR {target}: cannot write the app there ({exc.strerror or exc}); nothing was written",
                     EXIT_USAGE)
    if args.json:
        print(json.dumps({"created": str(target), "ci": args.ci, "files": [str(p) for p in written]}, indent=2))
        return EXIT_OK
    print(f"Created an mlinfra app in {target} ({len(written)} files):")
    for p in written:
        print(f"  {p}")
    print("\nNext steps:")
    print(f"  cd {target}")
    print("  make setup          # Python venv with mlinfra, Node 22 and the CDK CLI")
    print("  make test           # the app's own tests (offline)")
    print("  make deploy-local   # deploy into the local AWS emulator")
    if args.ci == "github":
        print("  # then set the repository variables AWS_ACCOUNT_ID and AWS_REGION and deploy the GitHub OIDC role")
    return EXIT_OK


def _scaffold_atomically(scaffold: Callable[..., list[Path]], target: Path, **kwargs: Any) -> list[Path]:
    """Render into a temporary folder beside ``target``, then move it into place: all or nothing.

    A new or empty target: one rename. ``--force`` into a non-empty target: file by file, each replaced file kept
    aside until every move succeeded, and everything put back when one fails."""
    from mlinfra.scaffold import ScaffoldError

    target = target.absolute()
    if target.exists() and not target.is_dir():
        raise ScaffoldError(f"{target} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not kwargs.get("force"):
        raise ScaffoldError(f"{target} is not empty (use --force to write into it)")
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.mlinfra-init-", dir=parent))
    try:
        kwargs.setdefault("prefix", None)
        if kwargs["prefix"] is None:
            from mlinfra.scaffold import default_prefix

            kwargs["prefix"] = default_prefix(target)
        written = scaffold(staging / "app", **kwargs)
        if not target.exists() or not any(target.iterdir()):
            if target.exists():
                target.rmdir()  # empty: replaced by the rendered app in one rename
            os.rename(staging / "app", target)
            return written
        _move_into(staging / "app", target, written, staging / "replaced")
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into(source: Path, target: Path, files: list[Path], aside: Path) -> None:
    moved: list[Path] = []
    try:
        for rel in files:
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                (aside / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(dest, aside / rel)
            moved.append(rel)
            os.replace(source / rel, dest)
    except OSError:
        for rel in reversed(moved):  # undo: remove what was moved in, put back what it replaced
            try:
                if (target / rel).exists() and not (source / rel).exists():
                    os.replace(target / rel, source / rel)
                if (aside / rel).exists():
                    os.replace(aside / rel, target / rel)
            except OSError:
                pass
        raise


# --------------------------------------------------------------------------------------------------
# deploy-local / destroy-local
# --------------------------------------------------------------------------------------------------


def cmd_schema(args: argparse.Namespace) -> int:
    """Print (or write) the JSON Schema of a configuration file."""
    from mlinfra.config import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        return _fail(args, f"cannot write {args.output}: {exc.strerror}", EXIT_USAGE)
    print(f"wrote {args.output}")
    return EXIT_OK


def _local_main() -> Callable[[list[str]], int] | None:
    try:
        from mlinfra.local_aws.__main__ import main as local_main
    except ImportError:
        return None
    return local_main


def cmd_local(args: argparse.Namespace) -> int:
    local_main = _local_main()
    if local_main is None:
        return _fail(args, "the local AWS emulator (mlinfra.local_aws) is not available in this installation", EXIT_FAILED)
    argv = [args.action, "--app-dir", str(args.app_dir)]
    if getattr(args, "workdir", None):
        argv += ["--workdir", str(args.workdir)]
    if args.action == "deploy":  # destroy takes only the app and work directories
        argv += ["--env", args.env]
        if args.keep:
            argv.append("--keep")
        if args.json:
            argv.append("--json")
    return int(local_main(argv) or 0)


# --------------------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------------------


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"error": message}))
    else:
        print(f"mlinfra: error: {message}", file=sys.stderr)
    return code


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def _register_plugin(subparsers: Any, name: str, module_name: str) -> None:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        module = None
    register = getattr(module, "register_cli", None)
    if register is not None:
        register(subparsers)
        return
    parser = subparsers.add_parser(name, help=f"(unavailable: {module_name} is not installed)",
                                   description=f"{name} needs {module_name}, which this installation lacks.")
    _add_json(parser)
    parser.set_defaults(func=lambda a: _fail(a, f"{name} is unavailable: {module_name} is not installed", EXIT_FAILED))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlinfra",
        description="mlinfra: AWS CDK constructs for deep-learning infrastructure.",
        epilog="Exit codes: 0 success, 1 failure, 2 usage or configuration errors.",
    )
    parser.add_argument("--version", action="version", version=f"mlinfra {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("validate", help="validate a configuration and summarize what it deploys",
                       description="Load every environment (or --env) of a configuration file, print every error "
                                   "at once (exit 2) or a summary of the stacks and key settings of each environment.")
    p.add_argument("config", help="the configuration file (YAML or JSON), e.g. config/platform.yaml")
    p.add_argument("--env", help="validate only this environment (default: all)")
    _add_json(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("init", help="scaffold a new mlinfra app",
                       description="Write a standalone CDK app using mlinfra: cdk.json, app.py, a configuration with "
                                   "local/dev/prod environments, tests, Makefile, README and package.json.")
    p.add_argument("dir", help="directory to create (must be empty or absent)")
    p.add_argument("--ci", choices=["github", "pipelines"], help="add CI/CD: a GitHub Actions workflow with OIDC, "
                   "or an AWS CodePipeline (CDK Pipelines) delivery stack")
    p.add_argument("--prefix", help="stack and resource name prefix (default: derived from DIR)")
    p.add_argument("--force", action="store_true", help="write into a non-empty directory, replacing files")
    _add_json(p)
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("schema", help="print the JSON Schema of the configuration file",
                       description="Print the JSON Schema (draft 2020-12) of a configuration file: every section, field, "
                                   "default and bound. Editors read it through the '# yaml-language-server: $schema=' "
                                   "comment at the top of config/platform.yaml.")
    p.add_argument("--output", "-o", help="write the schema to this file instead of stdout")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("deploy-local", help="deploy the app's local environment into the local AWS emulator",
                       description="Synthesize the app's 'local' environment, start the embedded emulator (moto), "
                                   "deploy every stack and print what was created, emulated and skipped.")
    p.add_argument("--app-dir", default=".", type=Path, help="the CDK app directory (default: .)")
    p.add_argument("--env", default="local", help="environment of the app's configuration (default: local)")
    p.add_argument("--keep", action="store_true", help="keep the emulator running after the deploy")
    p.add_argument("--workdir", type=Path, default=None, help="state, logs and report (default: APP_DIR/.local-aws)")
    _add_json(p)
    p.set_defaults(func=cmd_local, action="deploy")

    p = sub.add_parser("destroy-local", help="destroy a kept local deploy and stop its emulator",
                       description="Destroy the stacks of a deploy-local --keep run and stop the emulator.")
    p.add_argument("--app-dir", default=".", type=Path, help="the CDK app directory (default: .)")
    p.add_argument("--workdir", type=Path, default=None, help="state of the kept deploy (default: APP_DIR/.local-aws)")
    p.set_defaults(func=cmd_local, action="destroy")

    for name, module_name in PLUGINS:
        _register_plugin(sub, name, module_name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) and usage errors (2)
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except KeyboardInterrupt:
        print("mlinfra: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_PIPE_CLOSED
    except (ValueError, ArithmeticError) as exc:  # a subcommand's own check missed a bad value: still a usage error
        print(f"mlinfra {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _silence_stdout() -> None:
    """After the reader of stdout went away: point stdout at /dev/null so the interpreter's final flush is quiet
    (Python docs, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
