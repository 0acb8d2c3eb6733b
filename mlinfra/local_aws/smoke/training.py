"""Smoke check of the training stack on the emulator.

- AWS Batch: the deployed job queue is ENABLED and VALID, its compute environment is MANAGED, VALID and scales
  to zero (min vCPUs 0), the multi-node parallel job definition is ACTIVE with its EFA devices and Lustre mount.
- FSx for Lustre: moto's CloudFormation has no ``AWS::FSx::FileSystem``; the local deploy creates the stack's
  file system through the FSx API ("created (API)" in the report), and this check also creates the cache plan the
  stack used through that API, reads it back and deletes it again. That proves the request shape and the sizing,
  not a mountable file system.
- The ParallelCluster custom resource cannot run here (no provider, no Lambda): the report lists it as skipped.
"""

from __future__ import annotations

from typing import Any

ORDER = 30


def run(ctx: Any) -> list[str]:
    if not ctx.has_stack("training"):
        return []
    outputs = ctx.outputs("training")
    lines: list[str] = []
    subnet = None
    if "BatchJobQueueArn" in outputs:
        subnet, batch_lines = _check_batch(ctx, outputs)
        lines += batch_lines
    lines += _check_fsx(ctx, subnet, outputs.get("SageMakerJobSecurityGroupId"))
    return lines


def _check_batch(ctx: Any, outputs: dict[str, str]) -> tuple[str | None, list[str]]:
    batch = ctx.client("batch")
    queue_ref = outputs["BatchJobQueueArn"]
    queues = batch.describe_job_queues(jobQueues=[queue_ref])["jobQueues"]
    if len(queues) != 1:
        raise AssertionError(f"job queue {queue_ref} not found on the emulator (found {len(queues)})")
    queue = queues[0]
    if (queue["state"], queue["status"]) != ("ENABLED", "VALID"):
        raise AssertionError(f"job queue {queue['jobQueueName']} is {queue['state']}/{queue['status']}, "
                             "expected ENABLED/VALID")
    ce_arn = queue["computeEnvironmentOrder"][0]["computeEnvironment"]
    (ce,) = batch.describe_compute_environments(computeEnvironments=[ce_arn])["computeEnvironments"]
    resources = ce["computeResources"]
    if ce["type"] != "MANAGED" or ce["status"] != "VALID" or resources["minvCpus"] != 0:
        raise AssertionError(f"compute environment {ce['computeEnvironmentName']}: type {ce['type']}, status "
                             f"{ce['status']}, minvCpus {resources['minvCpus']}; expected MANAGED, VALID, 0")
    lines = [
        f"Batch job queue {queue['jobQueueName']}: ENABLED, VALID",
        f"compute environment {ce['computeEnvironmentName']}: MANAGED, VALID, vCPUs {resources['minvCpus']}.."
        f"{resources['maxvCpus']} on {', '.join(resources['instanceTypes'])}",
    ]
    subnet = (resources.get("subnets") or [None])[0]
    jd_ref = outputs.get("BatchJobDefinitionArn", "")
    if not jd_ref or jd_ref.startswith("emulator-skipped-"):
        # moto's CloudFormation JobDefinition registers every definition as type "container": the emulator
        # skips multi-node ones (they are covered by the template assertions of the unit tests).
        return subnet, lines + ["multi-node job definition: skipped by the emulator (moto's CloudFormation "
                                "JobDefinition is container-only), not created"]
    (jd,) = batch.describe_job_definitions(jobDefinitions=[jd_ref])["jobDefinitions"]
    if jd["type"] != "multinode" or jd["status"] != "ACTIVE":
        raise AssertionError(f"job definition {jd_ref} is {jd['type']}/{jd['status']}, expected multinode/ACTIVE")
    line = f"job definition {jd['jobDefinitionName']}:{jd['revision']}: multinode, ACTIVE"
    if "nodeProperties" in jd:
        container = jd["nodeProperties"]["nodeRangeProperties"][0]["container"]
        devices = container.get("linuxParameters", {}).get("devices", [])
        volumes = [v.get("host", {}).get("sourcePath") for v in container.get("volumes", [])]
        line += f", x{jd['nodeProperties']['numNodes']} nodes, {len(devices)} EFA device(s), host volume(s) {volumes}"
    else:
        line += " (moto's describe_job_definitions leaves nodeProperties out)"
    return subnet, lines + [line]


def _check_fsx(ctx: Any, subnet: str | None, security_group: str | None) -> list[str]:
    from mlinfra.domain.lustre_sizing import plan_cache

    cfg = ctx.config.training
    if cfg.cache_storage_capacity_gib is None:
        plan = plan_cache(cfg.sizing_gpus, cfg.sizing_per_gpu_read_mbps, cfg.sizing_dataset_gib,
                          deployment_types=(cfg.cache_deployment_type,))
        capacity, per_unit, dtype = plan.storage_capacity_gib, plan.per_unit_storage_throughput, plan.deployment_type
    else:
        capacity, per_unit, dtype = (cfg.cache_storage_capacity_gib, cfg.cache_per_unit_throughput,
                                     cfg.cache_deployment_type)
    lustre: dict[str, Any] = {"DeploymentType": dtype, "DataCompressionType": "LZ4"}
    if dtype != "SCRATCH_2" and per_unit:
        lustre["PerUnitStorageThroughput"] = per_unit
    fsx = ctx.client("fsx")
    created = fsx.create_file_system(
        FileSystemType="LUSTRE", StorageCapacity=capacity, StorageType="SSD",
        SubnetIds=[subnet or "subnet-emulated"], SecurityGroupIds=[security_group] if security_group else [],
        LustreConfiguration=lustre, FileSystemTypeVersion="2.15",
        Tags=[{"Key": "mlinfra:smoke", "Value": "training"}],
    )["FileSystem"]
    fs_id = created["FileSystemId"]
    try:
        (described,) = fsx.describe_file_systems(FileSystemIds=[fs_id])["FileSystems"]
        got = (described["StorageCapacity"], described.get("LustreConfiguration", {}).get("DeploymentType"))
        if got != (capacity, dtype):
            raise AssertionError(f"FSx {fs_id} reads back as {got}, expected {(capacity, dtype)}")
    finally:
        fsx.delete_file_system(FileSystemId=fs_id)
    return [f"FSx create_file_system through the API (moto skips AWS::FSx::* in CloudFormation): {dtype} "
            f"{capacity} GiB" + (f" at {per_unit} MB/s/TiB" if per_unit and dtype != "SCRATCH_2" else "")
            + f" -> {fs_id} read back, then deleted"]
