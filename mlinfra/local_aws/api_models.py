"""Resource types moto's CloudFormation cannot create, created through moto's own service APIs instead.

moto 5.2.5 implements the service APIs of many types its CloudFormation engine skips (bucket, queue and topic
policies, CloudWatch alarms, Application Auto Scaling, Glue databases, security-group egress,
FSx file systems, SageMaker model package groups and HyperPod clusters, DataSync S3 locations and tasks,
Transfer Family servers and users, budgets). The emulator process (:mod:`mlinfra.local_aws.server_main`) registers one CloudFormation model
per type here: when a stack creates such a resource, the model turns its properties into the service's API
request (fitted to botocore's service model: strings to numbers where the API takes numbers, properties the
API has no field for listed as dropped), sends it to the same emulator and returns the API's identifiers, so
``Ref`` and ``Fn::GetAtt`` resolve to real values. The deploy report calls these resources "created (API)"
and reads each one back through its service's API (:func:`read_back`).

Design: one :class:`ApiType` per CloudFormation type, by type and property, never by an app's names. A request
the API refuses does not fail the stack: the resource is recorded as refused, with the API's error, and the
report lists it as not created.

Not here because moto 5.2.5 lacks the API too (measured: HTTP 500 "not implemented"): EC2 placement groups, FSx
data repository associations.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

#: Shown where a refused resource's id or attribute is used by another resource.
REFUSED_PLACEHOLDER = "emulator-refused-{}"


@dataclass(frozen=True)
class ApiType:
    """How one CloudFormation type is created through its service API and read back."""

    service: str  #: boto3 service name
    #: (client, properties, generated name, account) -> (physical id (what Ref returns), attributes, notes)
    create: Callable[[Any, dict[str, Any], str, str], tuple[str, dict[str, str], list[str]]]
    #: (client, physical id, attributes) -> one line saying what the API returned
    read_back: Callable[[Any, str, dict[str, str]], str]
    attributes: tuple[str, ...] = ()
    name_property: str = ""  #: the property that names the resource (moto's generated name otherwise)
    delete: Callable[[Any, str, dict[str, str]], None] | None = None


# ---------------------------------------------------------------------------------------------- fitting
def fit(client: Any, operation: str, params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``params`` fitted to the input shape of ``operation`` in botocore's service model: numbers and booleans
    converted where the API takes them, members the API lacks dropped (returned, as dotted paths)."""
    model = client.meta.service_model.operation_model(operation).input_shape
    dropped: list[str] = []
    return _fit(params, model, "", dropped), dropped


def _fit(value: Any, shape: Any, path: str, dropped: list[str]) -> Any:
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return value
        out = {}
        for key, item in value.items():
            if key in shape.members:
                out[key] = _fit(item, shape.members[key], f"{path}.{key}" if path else key, dropped)
            else:
                dropped.append(f"{path}.{key}" if path else key)
        return out
    if kind == "list":
        items = value if isinstance(value, list) else [value]
        return [_fit(v, shape.member, f"{path}[]", dropped) for v in items]
    if kind == "map":
        return {k: _fit(v, shape.value, f"{path}.{k}", dropped) for k, v in value.items()} if isinstance(value, dict) else value
    if kind in ("integer", "long") and isinstance(value, (str, float)):
        return int(float(value))
    if kind in ("float", "double") and isinstance(value, (str, int)):
        return float(value)
    if kind == "boolean" and isinstance(value, str):
        return value.lower() == "true"
    if kind == "string" and isinstance(value, dict | list):
        return json.dumps(value)  # a policy document given as an object in the template
    if kind == "string" and isinstance(value, bool):
        return "true" if value else "false"
    if kind == "string" and isinstance(value, int | float):
        return str(value)
    return value


def _call(client: Any, operation: str, params: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    fitted, dropped = fit(client, operation, params)
    if dropped:
        notes.append(f"properties the {operation} API has no field for were dropped: {', '.join(dropped)}")
    method = client.meta.method_to_api_mapping
    name = next(py for py, api in method.items() if api == operation)
    return getattr(client, name)(**fitted)


def _pick(props: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: props[k] for k in keys if k in props}


def _unused(props: dict[str, Any], used: set[str], notes: list[str]) -> None:
    rest = sorted(set(props) - used)
    if rest:
        notes.append(f"not applied by the emulator: {', '.join(rest)}")


def _policy(doc: Any) -> str:
    return doc if isinstance(doc, str) else json.dumps(doc)


# ---------------------------------------------------------------------------------------------- types
def _alarm(c, p, name, account):
    notes: list[str] = []
    params = {k: v for k, v in p.items() if k != "AlarmName"}
    params["AlarmName"] = p.get("AlarmName") or name
    _call(c, "PutMetricAlarm", params, notes)
    arn = c.describe_alarms(AlarmNames=[params["AlarmName"]])["MetricAlarms"][0]["AlarmArn"]
    notes.append("the emulator never evaluates alarms: the state stays as created")
    return params["AlarmName"], {"Arn": arn}, notes


def _alarm_read(c, pid, attrs):
    alarm = c.describe_alarms(AlarmNames=[pid])["MetricAlarms"][0]
    return f"alarm {alarm['AlarmName']} ({alarm.get('MetricName') or 'metric math'}, state {alarm['StateValue']})"


def _egress(c, p, name, account):
    notes: list[str] = []
    perm: dict[str, Any] = _pick(p, "IpProtocol", "FromPort", "ToPort")
    rng = {"Description": p["Description"]} if "Description" in p else {}
    if "CidrIp" in p:
        perm["IpRanges"] = [{"CidrIp": p["CidrIp"], **rng}]
    if "CidrIpv6" in p:
        perm["Ipv6Ranges"] = [{"CidrIpv6": p["CidrIpv6"], **rng}]
    if "DestinationPrefixListId" in p:
        perm["PrefixListIds"] = [{"PrefixListId": p["DestinationPrefixListId"], **rng}]
    if "DestinationSecurityGroupId" in p:
        perm["UserIdGroupPairs"] = [{"GroupId": p["DestinationSecurityGroupId"], **rng}]
    out = _call(c, "AuthorizeSecurityGroupEgress", {"GroupId": p["GroupId"], "IpPermissions": [perm]}, notes)
    rules = out.get("SecurityGroupRules") or []
    rule_id = rules[0]["SecurityGroupRuleId"] if rules else name
    return rule_id, {"Id": rule_id, "GroupId": p["GroupId"], "Permission": json.dumps(perm, sort_keys=True)}, notes


def _egress_read(c, pid, attrs):
    group = c.describe_security_groups(GroupIds=[attrs["GroupId"]])["SecurityGroups"][0]
    want = json.loads(attrs["Permission"])
    for perm in group.get("IpPermissionsEgress", []):
        if perm.get("IpProtocol") == str(want.get("IpProtocol")) and perm.get("FromPort") == want.get("FromPort"):
            return f"egress {want.get('IpProtocol')} {want.get('FromPort', '')}-{want.get('ToPort', '')} on {attrs['GroupId']}"
    raise LookupError(f"egress rule {want} not found on {attrs['GroupId']}")


def _queue_policy(c, p, name, account):
    notes: list[str] = []
    for url in p.get("Queues", []):
        c.set_queue_attributes(QueueUrl=url, Attributes={"Policy": _policy(p["PolicyDocument"])})
    return name, {"Queues": json.dumps(p.get("Queues", []))}, notes


def _queue_policy_read(c, pid, attrs):
    urls = json.loads(attrs["Queues"])
    for url in urls:
        json.loads(c.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"])
    return f"policy on {len(urls)} queue(s)"


def _bucket_policy(c, p, name, account):
    c.put_bucket_policy(Bucket=p["Bucket"], Policy=_policy(p["PolicyDocument"]))
    doc = p["PolicyDocument"] if isinstance(p["PolicyDocument"], dict) else json.loads(p["PolicyDocument"])
    statements = doc.get("Statement", [])
    conditional = [st for st in (statements if isinstance(statements, list) else [statements]) if st.get("Condition")]
    notes = [f"stored as written; the emulator does not enforce its {len(conditional)} conditional statement(s) "
             "(moto ignores conditions)"] if conditional else []
    return name, {"Bucket": p["Bucket"]}, notes


def _bucket_policy_read(c, pid, attrs):
    doc = json.loads(c.get_bucket_policy(Bucket=attrs["Bucket"])["Policy"])
    return f"policy on s3://{attrs['Bucket']} ({len(doc.get('Statement', []))} statements)"


def _topic_policy(c, p, name, account):
    for arn in p.get("Topics", []):
        c.set_topic_attributes(TopicArn=arn, AttributeName="Policy", AttributeValue=_policy(p["PolicyDocument"]))
    return name, {"Topics": json.dumps(p.get("Topics", []))}, []


def _topic_policy_read(c, pid, attrs):
    topics = json.loads(attrs["Topics"])
    for arn in topics:
        json.loads(c.get_topic_attributes(TopicArn=arn)["Attributes"]["Policy"])
    return f"policy on {len(topics)} topic(s)"


def _model_package_group(c, p, name, account):
    notes: list[str] = []
    group = p.get("ModelPackageGroupName") or name
    params = {**_pick(p, "ModelPackageGroupDescription", "Tags"), "ModelPackageGroupName": group}
    out = _call(c, "CreateModelPackageGroup", params, notes)
    _unused(p, {"ModelPackageGroupName", "ModelPackageGroupDescription", "Tags"}, notes)
    described = c.describe_model_package_group(ModelPackageGroupName=group)
    arn = out["ModelPackageGroupArn"]
    return arn, {"ModelPackageGroupArn": arn, "ModelPackageGroupName": group,
                 "CreationTime": str(described.get("CreationTime", "")),
                 "ModelPackageGroupStatus": described.get("ModelPackageGroupStatus", "Completed")}, notes


def _model_package_group_read(c, pid, attrs):
    group = c.describe_model_package_group(ModelPackageGroupName=attrs["ModelPackageGroupName"])
    return f"model package group {group['ModelPackageGroupName']} ({group.get('ModelPackageGroupStatus')})"


def _scalable_target(c, p, name, account):
    notes: list[str] = []
    keys = ("ServiceNamespace", "ResourceId", "ScalableDimension", "MinCapacity", "MaxCapacity", "RoleARN",
            "SuspendedState")
    _call(c, "RegisterScalableTarget", _pick(p, *keys), notes)
    for action in p.get("ScheduledActions", []):
        params = {**action, **_pick(p, "ServiceNamespace", "ResourceId", "ScalableDimension")}
        _call(c, "PutScheduledAction", params, notes)
    _unused(p, {*keys, "ScheduledActions"}, notes)
    pid = f"{p['ResourceId']}|{p['ScalableDimension']}|{p['ServiceNamespace']}"
    return pid, {"Id": pid}, notes


def _scalable_target_read(c, pid, attrs):
    resource, dimension, namespace = pid.split("|")
    found = c.describe_scalable_targets(ServiceNamespace=namespace, ResourceIds=[resource],
                                        ScalableDimension=dimension)["ScalableTargets"]
    if not found:
        raise LookupError(f"scalable target {pid} not found")
    t = found[0]
    return f"scalable target {resource} {dimension} {t['MinCapacity']}..{t['MaxCapacity']}"


def _scaling_policy(c, p, name, account):
    notes: list[str] = []
    params = _pick(p, "PolicyType", "TargetTrackingScalingPolicyConfiguration", "StepScalingPolicyConfiguration",
                   "ServiceNamespace", "ResourceId", "ScalableDimension")
    params["PolicyName"] = p.get("PolicyName") or name
    if "ScalingTargetId" in p:
        resource, dimension, namespace = str(p["ScalingTargetId"]).split("|")
        params.update(ResourceId=resource, ScalableDimension=dimension, ServiceNamespace=namespace)
    out = _call(c, "PutScalingPolicy", params, notes)
    arn = out["PolicyARN"]
    return arn, {"Arn": arn, "PolicyName": params["PolicyName"], "ServiceNamespace": params["ServiceNamespace"]}, notes


def _scaling_policy_read(c, pid, attrs):
    found = c.describe_scaling_policies(ServiceNamespace=attrs["ServiceNamespace"],
                                        PolicyNames=[attrs["PolicyName"]])["ScalingPolicies"]
    if not found:
        raise LookupError(f"scaling policy {attrs['PolicyName']} not found")
    return f"scaling policy {found[0]['PolicyName']} ({found[0]['PolicyType']})"


def _glue_database(c, p, name, account):
    notes: list[str] = []
    db_input = dict(p.get("DatabaseInput") or {})
    db_input.setdefault("Name", name.lower())
    _call(c, "CreateDatabase", {"DatabaseInput": db_input}, notes)
    return db_input["Name"], {}, notes


def _glue_database_read(c, pid, attrs):
    db = c.get_database(Name=pid)["Database"]
    return f"Glue database {db['Name']}" + (f" at {db['LocationUri']}" if db.get("LocationUri") else "")


def _location_s3(c, p, name, account):
    notes: list[str] = []
    out = _call(c, "CreateLocationS3", p, notes)
    arn = out["LocationArn"]
    uri = c.describe_location_s3(LocationArn=arn).get("LocationUri", "")
    return arn, {"LocationArn": arn, "LocationUri": uri}, notes


def _location_s3_read(c, pid, attrs):
    return f"DataSync location {c.describe_location_s3(LocationArn=pid).get('LocationUri')}"


def _datasync_task(c, p, name, account):
    notes: list[str] = []
    out = _call(c, "CreateTask", p, notes)
    arn = out["TaskArn"]
    return arn, {"TaskArn": arn}, notes


def _datasync_task_read(c, pid, attrs):
    task = c.describe_task(TaskArn=pid)
    return f"DataSync task {task.get('Name') or pid} ({task.get('Status')})"


def _fsx(c, p, name, account):
    notes: list[str] = []
    out = _call(c, "CreateFileSystem", p, notes)["FileSystem"]
    fs_id = out["FileSystemId"]
    lustre = out.get("LustreConfiguration") or {}
    attrs = {"DNSName": out.get("DNSName", f"{fs_id}.fsx.local"),
             "LustreMountName": lustre.get("MountName", "emulated"),
             "ResourceARN": out.get("ResourceARN", ""), "RootVolumeId": ""}
    notes.append("an API record only: nothing is mountable in the emulator")
    return fs_id, attrs, notes


def _fsx_read(c, pid, attrs):
    fs = c.describe_file_systems(FileSystemIds=[pid])["FileSystems"][0]
    return f"{fs['FileSystemType']} file system {pid} ({fs.get('StorageCapacity')} GiB, {fs.get('Lifecycle')})"


def _transfer_server(c, p, name, account):
    notes: list[str] = []
    out = _call(c, "CreateServer", p, notes)
    server_id = out["ServerId"]
    arn = c.describe_server(ServerId=server_id)["Server"]["Arn"]
    return arn, {"Arn": arn, "ServerId": server_id}, notes


def _transfer_server_read(c, pid, attrs):
    server = c.describe_server(ServerId=attrs["ServerId"])["Server"]
    return f"Transfer server {server['ServerId']} ({server.get('EndpointType')}, {', '.join(server.get('Protocols', []))})"


def _transfer_user(c, p, name, account):
    notes: list[str] = []
    params = {k: v for k, v in p.items() if k != "SshPublicKeys"}
    keys = p.get("SshPublicKeys") or []
    if keys:
        params["SshPublicKeyBody"] = keys[0]
    server_id = params["ServerId"]
    _call(c, "CreateUser", params, notes)
    for key in keys[1:]:
        c.import_ssh_public_key(ServerId=server_id, UserName=params["UserName"], SshPublicKeyBody=key)
    arn = c.describe_user(ServerId=server_id, UserName=params["UserName"])["User"]["Arn"]
    return arn, {"Arn": arn, "ServerId": server_id, "UserName": params["UserName"]}, notes


def _transfer_user_read(c, pid, attrs):
    user = c.describe_user(ServerId=attrs["ServerId"], UserName=attrs["UserName"])["User"]
    return f"Transfer user {user['UserName']} on {attrs['ServerId']}"


def _hyperpod_cluster(c, p, name, account):
    notes: list[str] = []
    params = {k: v for k, v in p.items() if k != "Tags"}
    params.setdefault("ClusterName", name[:63])
    if p.get("Tags"):
        params["Tags"] = p["Tags"]
    out = _call(c, "CreateCluster", params, notes)
    arn = out["ClusterArn"]
    status = c.describe_cluster(ClusterName=arn).get("ClusterStatus", "")
    notes.append("an API record only: no instances start in the emulator")
    return arn, {"ClusterArn": arn, "ClusterName": params["ClusterName"], "ClusterStatus": status,
                 "CreationTime": "", "FailureMessage": ""}, notes


def _hyperpod_cluster_read(c, pid, attrs):
    cluster = c.describe_cluster(ClusterName=pid)
    groups = ", ".join(f"{g.get('InstanceGroupName')} x{g.get('TargetCount', g.get('CurrentCount', 0))}"
                       for g in cluster.get("InstanceGroups", []))
    return f"HyperPod cluster {cluster.get('ClusterName')} ({cluster.get('ClusterStatus')}; {groups})"


def _budget(c, p, name, account):
    notes: list[str] = []
    budget = dict(p["Budget"])
    budget.setdefault("BudgetName", name)
    _call(c, "CreateBudget", {"AccountId": account, "Budget": budget,
                              "NotificationsWithSubscribers": p.get("NotificationsWithSubscribers", [])}, notes)
    _unused(p, {"Budget", "NotificationsWithSubscribers"}, notes)
    return budget["BudgetName"], {"Account": account}, notes


def _budget_read(c, pid, attrs):
    budget = c.describe_budget(AccountId=attrs["Account"], BudgetName=pid)["Budget"]
    limit = budget.get("BudgetLimit", {})
    return f"budget {pid} ({limit.get('Amount')} {limit.get('Unit')} per {budget.get('TimeUnit')})"


API_TYPES: dict[str, ApiType] = {
    "AWS::CloudWatch::Alarm": ApiType("cloudwatch", _alarm, _alarm_read, ("Arn",), "AlarmName"),
    "AWS::EC2::SecurityGroupEgress": ApiType("ec2", _egress, _egress_read, ("Id",)),
    "AWS::SQS::QueuePolicy": ApiType("sqs", _queue_policy, _queue_policy_read, ("Id",)),
    "AWS::S3::BucketPolicy": ApiType("s3", _bucket_policy, _bucket_policy_read),
    "AWS::SNS::TopicPolicy": ApiType("sns", _topic_policy, _topic_policy_read, ("Id",)),
    "AWS::SageMaker::ModelPackageGroup": ApiType(
        "sagemaker", _model_package_group, _model_package_group_read,
        ("ModelPackageGroupArn", "CreationTime", "ModelPackageGroupStatus"), "ModelPackageGroupName"),
    "AWS::ApplicationAutoScaling::ScalableTarget": ApiType(
        "application-autoscaling", _scalable_target, _scalable_target_read, ("Id",)),
    "AWS::ApplicationAutoScaling::ScalingPolicy": ApiType(
        "application-autoscaling", _scaling_policy, _scaling_policy_read, ("Arn",), "PolicyName"),
    "AWS::Glue::Database": ApiType("glue", _glue_database, _glue_database_read),
    "AWS::DataSync::LocationS3": ApiType("datasync", _location_s3, _location_s3_read, ("LocationArn", "LocationUri")),
    "AWS::DataSync::Task": ApiType("datasync", _datasync_task, _datasync_task_read, ("TaskArn",)),
    "AWS::FSx::FileSystem": ApiType(
        "fsx", _fsx, _fsx_read, ("DNSName", "LustreMountName", "ResourceARN", "RootVolumeId")),
    "AWS::Transfer::Server": ApiType("transfer", _transfer_server, _transfer_server_read, ("Arn", "ServerId")),
    "AWS::Transfer::User": ApiType("transfer", _transfer_user, _transfer_user_read, ("Arn", "ServerId", "UserName")),
    "AWS::Budgets::Budget": ApiType("budgets", _budget, _budget_read, ("Arn",)),
    "AWS::SageMaker::Cluster": ApiType(
        "sagemaker", _hyperpod_cluster, _hyperpod_cluster_read,
        ("ClusterArn", "ClusterName", "ClusterStatus", "CreationTime", "FailureMessage"), "ClusterName"),
}


# ---------------------------------------------------------------------------------------------- clients
@functools.lru_cache(maxsize=64)
def client(service: str, endpoint_url: str, region: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        service, endpoint_url=endpoint_url, region_name=region,
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def read_back(type_: str, endpoint_url: str, region: str, physical_id: str, attrs: dict[str, str]) -> str:
    """Read one API-created resource back through its service's API (raises when it is not there)."""
    spec = API_TYPES[type_]
    return spec.read_back(client(spec.service, endpoint_url, region), physical_id, attrs)


# ---------------------------------------------------------------------------------------------- registry
@dataclass
class ApiRecord:
    stack_id: str
    logical_id: str
    type: str
    region: str
    physical_id: str
    attributes: dict[str, str] = field(default_factory=dict)
    status: str = "created"  # "created" or "refused"
    error: str = ""
    notes: list[str] = field(default_factory=list)


_LOCK = threading.Lock()
_MODELS: list[type] = []
RECORDS: dict[str, ApiRecord] = {}


def records_json() -> bytes:
    with _LOCK:
        return json.dumps([r.__dict__ for r in RECORDS.values()]).encode()


def _create(type_: str, props: dict[str, Any], name: str, account: str, region: str, logical_id: str,
            stack_id: str) -> ApiRecord:
    spec = API_TYPES[type_]
    endpoint = f"http://127.0.0.1:{os.environ['MOTO_PORT']}"
    try:
        physical, attrs, notes = spec.create(client(spec.service, endpoint, region), props, name, account)
        record = ApiRecord(stack_id, logical_id, type_, region, physical, attrs, notes=notes)
    except Exception as exc:  # the API refused it: record the emulator's own error, keep the stack going
        record = ApiRecord(stack_id, logical_id, type_, region, REFUSED_PLACEHOLDER.format(logical_id),
                           status="refused", error=f"{type(exc).__name__}: {exc}")
    with _LOCK:
        RECORDS[f"{stack_id}|{logical_id}"] = record
    return record


def register() -> list[str]:
    """Register a moto CloudFormation model for every type of :data:`API_TYPES` (in the emulator process)."""
    from moto.cloudformation import parsing
    from moto.core.common_models import CloudFormationModel

    def make(type_: str, spec: ApiType) -> type:
        class ApiModel(CloudFormationModel):
            def __init__(self, record: ApiRecord):
                self.record = record

            @property
            def physical_resource_id(self) -> str:
                return self.record.physical_id

            @staticmethod
            def cloudformation_type() -> str:
                return type_

            @staticmethod
            def cloudformation_name_type() -> str:
                return spec.name_property

            @classmethod
            def has_cfn_attr(cls, attr: str) -> bool:
                return attr in spec.attributes

            def get_cfn_attribute(self, attribute_name: str) -> Any:
                if self.record.status != "created":
                    return REFUSED_PLACEHOLDER.format(self.record.logical_id)
                return self.record.attributes.get(attribute_name, "")

            @classmethod
            def create_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name,
                                                **kwargs):
                props = cloudformation_json.get("Properties", {})
                return cls(_create(type_, props, resource_name, account_id, region_name,
                                   kwargs.get("LogicalId", resource_name), kwargs.get("StackId", "")))

            @classmethod
            def update_from_cloudformation_json(cls, original_resource, new_resource_name, cloudformation_json,
                                                account_id, region_name):
                props = cloudformation_json.get("Properties", {})
                old = original_resource.record
                return cls(_create(type_, props, new_resource_name, account_id, region_name, old.logical_id,
                                   old.stack_id))

            @classmethod
            def delete_from_cloudformation_json(cls, resource_name, cloudformation_json, account_id, region_name):
                return None

            def delete(self, account_id: str, region_name: str) -> None:
                with _LOCK:
                    RECORDS.pop(f"{self.record.stack_id}|{self.record.logical_id}", None)

        ApiModel.__name__ = ApiModel.__qualname__ = "Api" + type_.replace("::", "")
        return ApiModel

    existing = set(parsing.get_model_map())
    for type_, spec in API_TYPES.items():
        if type_ not in existing:
            # moto finds models through CloudFormationModel.__subclasses__(), a list of weak references: keep
            # each class alive here.
            _MODELS.append(make(type_, spec))
    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()
    return sorted(set(API_TYPES) - existing)
