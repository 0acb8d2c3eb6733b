"""SftpServer: a Transfer Family server that lands partner uploads in one lake zone.

- Endpoint: a VPC endpoint in private subnets by default (reached over VPN/Direct Connect); an
  internet-facing VPC endpoint (Elastic IPs in public subnets) only with ``allow_public_endpoint=True`` AND a
  list of allowed CIDRs, enforced by the endpoint's security group. Port 22 (SFTP) and, with FTPS, 21 and the
  passive range 8192-8200 are opened to those CIDRs only.
- A current security policy (``TransferSecurityPolicy-2024-01`` by default; legacy policies are refused).
- Structured JSON logging to an encrypted CloudWatch log group.
- Storage: the lake's zone (S3, the default) or an EFS file system (``file_system``), never both.
- Users: service-managed users with SSH public keys, each confined to their own landing prefix by a LOGICAL
  home directory (``/`` maps to ``/<bucket>/<prefix>``) AND a session policy allowing only that prefix; read-only
  users get no write action. Or a custom identity provider: the ``transfer_idp`` Lambda authenticates
  against Secrets Manager and returns the same role, session policy and mapping.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import re
from typing import Sequence

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_efs as efs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_transfer as transfer
from constructs import Construct

from mlinfra.constructs.common import acknowledge, encrypted_log_group, is_token, limit_grants_to_aws_services, log_retention, path_in_errors
from mlinfra.constructs.data_lake import IDataLake, validate_prefix, validate_zone
from mlinfra.constructs.lambda_function import HandlerFunction
from mlinfra.constructs.wildcards import KMS_WILDCARD_ACTIONS, acknowledge_wildcards, ending
from mlinfra.domain.lake import user_prefix_error

__all__ = ["SftpServer", "SftpUser", "IdentityProvider", "Protocol", "CURRENT_SECURITY_POLICIES", "session_policy"]

#: Transfer Family security policies without legacy ciphers (SHA-1, CBC, diffie-hellman-group14-sha1), newest
#: first (AWS Transfer Family "Security policies for servers"). Older ones (2018-11, 2020-06, 2022-03) are refused.
CURRENT_SECURITY_POLICIES: tuple[str, ...] = (
    "TransferSecurityPolicy-2025-03",
    "TransferSecurityPolicy-FIPS-2025-03",
    "TransferSecurityPolicy-2024-01",
    "TransferSecurityPolicy-FIPS-2024-01",
    "TransferSecurityPolicy-2023-05",
    "TransferSecurityPolicy-FIPS-2023-05",
)
DEFAULT_SECURITY_POLICY = "TransferSecurityPolicy-2024-01"
FTPS_PASSIVE_PORTS = (8192, 8200)

_USER_RE = re.compile(r"^[\w][\w@.-]{2,99}$")
_SSH_KEY_RE = re.compile(r"^(ssh-rsa|ssh-ed25519|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521) [A-Za-z0-9+/]+={0,3}( \S.*)?$")


class IdentityProvider(str, enum.Enum):
    SERVICE_MANAGED = "SERVICE_MANAGED"
    LAMBDA = "AWS_LAMBDA"


class Protocol(str, enum.Enum):
    SFTP = "SFTP"
    FTPS = "FTPS"
    AS2 = "AS2"


@dataclasses.dataclass(frozen=True)
class SftpUser:
    """A service-managed user confined to ``prefix`` of the server's zone.

    :param name: 3-100 characters (letters, digits, ``_ @ . -``). :param prefix: the user's landing prefix
        (``partner-a/``). :param ssh_public_keys: OpenSSH public keys (rsa, ed25519, ecdsa; never ssh-dss).
    :param read_only: list and download only. :default: False
    :param extra_mappings: more logical directories ``(entry, prefix)``, each under the user's own prefix.
        :default: none
    :param posix_uid / posix_gid: the POSIX identity the user's files get on an EFS backend (required there,
        refused on S3). :default: None
    """

    name: str
    prefix: str
    ssh_public_keys: Sequence[str]
    read_only: bool = False
    extra_mappings: Sequence[tuple[str, str]] = ()
    posix_uid: int | None = None
    posix_gid: int | None = None


def session_policy(bucket_arn: str, prefix: str, *, read_only: bool) -> dict:
    """The scope-down policy of one user: list, read (and unless read-only, write) under ``prefix`` only. No
    delete: the landing zone never loses an upload."""
    objects = ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging"]
    if not read_only:
        objects += ["s3:PutObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload"]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ListOwnPrefix", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
             "Condition": {"StringLike": {"s3:prefix": [prefix, f"{prefix}*"]}}},
            {"Sid": "OwnObjects", "Effect": "Allow", "Action": objects, "Resource": f"{bucket_arn}/{prefix}*"},
        ],
    }


def validate_user(user: SftpUser) -> None:
    if not _USER_RE.fullmatch(user.name):
        raise ValueError(f"users[].name must be 3-100 letters, digits or _@.- (not starting with a symbol), got: {user.name!r}")
    if not user.prefix or user.prefix.startswith("_"):
        raise ValueError(f"users[{user.name}].prefix must be the user's own landing prefix (not '' nor a reserved '_' prefix), got: {user.prefix!r}")
    validate_prefix(user.prefix, f"users[{user.name}].prefix")
    problem = user_prefix_error(user.prefix, f"users[{user.name}].prefix")  # no '..', '*' segments (issue 19)
    if problem:
        raise ValueError(problem)
    if not user.ssh_public_keys:
        raise ValueError(f"users[{user.name}].ssh_public_keys must list at least one key, got: []")
    bad = [k[:24] for k in user.ssh_public_keys if not _SSH_KEY_RE.fullmatch(k.strip())]
    if bad:
        raise ValueError(
            f"users[{user.name}].ssh_public_keys must be OpenSSH rsa, ed25519 or ecdsa keys (ssh-dss is refused), got: {bad}"
        )
    validate_home_mappings(user)


def validate_home_mappings(user: SftpUser) -> list[tuple[str, str]]:
    """The user's logical directories: ``/`` -> their prefix, then ``extra_mappings``; every entry absolute,
    unique, without ``..``; every target inside the user's own prefix (no escaping through a mapping)."""
    mappings = [("/", user.prefix), *user.extra_mappings]
    seen: set[str] = set()
    for entry, target in mappings:
        problem = None
        if not entry.startswith("/") or ".." in entry.split("/") or "//" in entry:
            problem = "entry must be an absolute path without '..' or '//'"
        elif entry in seen:
            problem = "entry is mapped twice"
        elif not target.startswith(user.prefix) or ".." in target.split("/"):
            problem = f"target must stay under the user's prefix {user.prefix!r}"
        if problem:
            raise ValueError(f"users[{user.name}].home_directory_mappings: {problem}, got: {entry!r} -> {target!r}")
        seen.add(entry)
    return mappings


_POSIX_ID_MAX = 4294967295


def validate_backend(lake, file_system, protocols, identity_provider, users: Sequence[SftpUser]) -> None:
    """Exactly one backend: the lake's S3 zone or an EFS file system. EFS needs every user's POSIX profile and
    works with SFTP/FTPS and service-managed users (AS2 and the Lambda identity provider are S3-only here)."""
    if (lake is None) == (file_system is None):
        raise ValueError("SftpServer: pass either lake (the S3 backend) or file_system (the EFS backend), not both "
                         f"and not neither; got lake={'set' if lake else None}, file_system={'set' if file_system else None}")
    if file_system is None:
        posix = [u.name for u in users if u.posix_uid is not None or u.posix_gid is not None]
        if posix:
            raise ValueError(f"users {posix}: posix_uid/posix_gid apply to the EFS backend only, got them with the S3 backend")
        return
    if Protocol.AS2 in protocols:
        raise ValueError("protocols: AS2 stores messages in S3 only, got: AS2 with the EFS backend")
    if identity_provider != IdentityProvider.SERVICE_MANAGED:
        raise ValueError("identity_provider: the EFS backend takes service-managed users here, got: AWS_LAMBDA")
    for u in users:
        for name, value in (("posix_uid", u.posix_uid), ("posix_gid", u.posix_gid)):
            if value is None or (not is_token(value) and not 0 <= value <= _POSIX_ID_MAX):
                raise ValueError(f"users[{u.name}].{name} must be an integer between 0 and {_POSIX_ID_MAX} on the EFS "
                                 f"backend (files are owned by it), got: {value!r}")


def validate_security_policy(name: str) -> None:
    if name not in CURRENT_SECURITY_POLICIES:
        raise ValueError(f"security_policy must be a current policy {list(CURRENT_SECURITY_POLICIES)}, got: {name!r}")


def validate_public_endpoint(allow_public: bool, allowed_cidrs: Sequence[str]) -> None:
    if allow_public and not allowed_cidrs:
        raise ValueError("allowed_cidrs: a public endpoint needs the partner CIDRs allowed to connect, got: []")
    for cidr in allowed_cidrs:
        try:
            net = ipaddress.ip_network(cidr)
        except ValueError as exc:
            raise ValueError(f"allowed_cidrs must be IPv4 CIDRs, got: {cidr!r}") from exc
        if net.prefixlen == 0:
            raise ValueError(f"allowed_cidrs must not open the server to the whole internet, got: {cidr!r}")


class SftpServer(Construct):
    """A Transfer Family server writing into ``lake``'s ``zone``.

    :param lake: the lake: users land in its ``zone`` (the S3 backend). :param zone: :default: "landing"
    :param file_system: an EFS file system instead of the lake (the EFS backend, for partners who need POSIX
        semantics; users then need ``posix_uid``/``posix_gid``, and DataSync can move their files to the lake).
        Exactly one of ``lake`` and ``file_system``. :default: None
    :param vpc: the VPC of the endpoint. :param subnets: private subnets of the internal endpoint.
        :default: the VPC's private subnets
    :param allow_public_endpoint: an internet-facing endpoint (Elastic IPs in public subnets). :default: False
    :param allowed_cidrs: client networks admitted by the security group (required when public).
        :default: the VPC CIDR only
    :param protocols: :default: [SFTP]. FTPS needs ``certificate_arn``; plain FTP is never offered.
    :param certificate_arn: ACM certificate for FTPS. :default: None
    :param security_policy: :default: TransferSecurityPolicy-2024-01
    :param identity_provider: SERVICE_MANAGED (``users``) or LAMBDA (``transfer_idp`` + Secrets Manager).
        :default: SERVICE_MANAGED
    :param users: service-managed users. :default: none
    :param secret_prefix: Secrets Manager name prefix of Lambda-authenticated users. :default: "mlinfra/transfer/"
    :param log_retention_days: :default: 365
    :param encryption_key: key of the log group. :default: a new rotated key
    """

    @path_in_errors
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        lake: IDataLake | None = None,
        vpc: ec2.IVpc,
        zone: str = "landing",
        subnets: ec2.SubnetSelection | None = None,
        allow_public_endpoint: bool = False,
        allowed_cidrs: Sequence[str] = (),
        protocols: Sequence[Protocol] = (Protocol.SFTP,),
        certificate_arn: str | None = None,
        security_policy: str = DEFAULT_SECURITY_POLICY,
        identity_provider: IdentityProvider = IdentityProvider.SERVICE_MANAGED,
        users: Sequence[SftpUser] = (),
        secret_prefix: str = "mlinfra/transfer/",
        log_retention_days: int = 365,
        encryption_key: kms.IKey | None = None,
        file_system: efs.IFileSystem | None = None,
    ) -> None:
        super().__init__(scope, id)
        if lake is not None:
            validate_zone(zone, lake.zones)
        validate_security_policy(security_policy)
        validate_public_endpoint(allow_public_endpoint, allowed_cidrs)
        protocols = [Protocol(p) for p in protocols]
        identity_provider = IdentityProvider(identity_provider)
        if not protocols or len(set(protocols)) != len(protocols):
            raise ValueError(f"protocols must be a non-empty list of distinct SFTP, FTPS, AS2, got: {[p.value for p in protocols]}")
        if Protocol.FTPS in protocols and not certificate_arn:
            raise ValueError("certificate_arn: FTPS needs an ACM certificate, got: None")
        if Protocol.AS2 in protocols and identity_provider != IdentityProvider.SERVICE_MANAGED:
            raise ValueError("protocols: AS2 works with SERVICE_MANAGED identities only, got: AWS_LAMBDA")
        if users and identity_provider != IdentityProvider.SERVICE_MANAGED:
            raise ValueError("users: service-managed users need identity_provider SERVICE_MANAGED; with LAMBDA users live in Secrets Manager")
        for user in users:
            validate_user(user)
        names = [u.name for u in users]
        if len(set(names)) != len(names):
            raise ValueError(f"users: names must be unique, got: {names}")
        validate_backend(lake, file_system, protocols, identity_provider, users)

        self.lake, self.zone, self.file_system = lake, zone, file_system
        self.bucket = lake.bucket(zone) if lake is not None else None
        self.key = encryption_key or kms.Key(self, "Key", enable_key_rotation=True, description="Transfer Family logs")
        limit_grants_to_aws_services(self.key)
        self.log_group = encrypted_log_group(self, "Logs", key=self.key, removal_policy=cdk.RemovalPolicy.RETAIN,
                                             retention=log_retention(log_retention_days, "log_retention_days"))

        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=vpc, allow_all_outbound=False,
            description="Transfer Family endpoint: SFTP/FTPS from the allowed networks only",
        )
        peers = list(allowed_cidrs) or [vpc.vpc_cidr_block]
        for cidr in peers:
            if Protocol.SFTP in protocols or Protocol.AS2 in protocols:
                self.security_group.add_ingress_rule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(22), "SFTP")
            if Protocol.FTPS in protocols:
                self.security_group.add_ingress_rule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(21), "FTPS control")
                self.security_group.add_ingress_rule(ec2.Peer.ipv4(cidr), ec2.Port.tcp_range(*FTPS_PASSIVE_PORTS), "FTPS passive")

        if not allowed_cidrs:
            acknowledge(
                self.security_group, "AwsSolutions-EC23",
                "Ingress is the VPC's own CIDR (a token cdk-nag cannot read), not 0.0.0.0/0: the endpoint is private.",
            )
        if allow_public_endpoint:
            chosen = vpc.select_subnets(subnet_type=ec2.SubnetType.PUBLIC)
            self.elastic_ips = [ec2.CfnEIP(self, f"Eip{i}", domain="vpc") for i, _ in enumerate(chosen.subnet_ids)]
            endpoint = transfer.CfnServer.EndpointDetailsProperty(
                vpc_id=vpc.vpc_id, subnet_ids=chosen.subnet_ids,
                security_group_ids=[self.security_group.security_group_id],
                address_allocation_ids=[e.attr_allocation_id for e in self.elastic_ips],
            )
        else:
            subnets = subnets or ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
            chosen = vpc.select_subnets(
                subnets=subnets.subnets, subnet_group_name=subnets.subnet_group_name,
                subnet_type=subnets.subnet_type, one_per_az=subnets.one_per_az,
            )
            self.elastic_ips = []
            endpoint = transfer.CfnServer.EndpointDetailsProperty(
                vpc_id=vpc.vpc_id, subnet_ids=chosen.subnet_ids, security_group_ids=[self.security_group.security_group_id],
            )

        # The one role every user session assumes; sessions are scoped down to one prefix by their session policy.
        self.user_role = self._session_role("UserRole", "Transfer Family user sessions (each scoped to its prefix by a session policy)")
        self.read_only_role: iam.Role | None = None
        if file_system is None:
            self._grant_s3(lake)
        else:
            # EFS has no session policies: each user's logical home directory confines the session, POSIX
            # permissions (the user's uid/gid) do the rest, and read-only users get a role that cannot write.
            file_system.grant(self.user_role, "elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite")
            if any(u.read_only for u in users):
                self.read_only_role = self._session_role("ReadOnlyRole", "Transfer Family read-only sessions (EFS)")
                file_system.grant(self.read_only_role, "elasticfilesystem:ClientMount")

        self.identity_function: HandlerFunction | None = None
        idp_details = None
        if identity_provider == IdentityProvider.LAMBDA:
            validate_prefix(secret_prefix, "secret_prefix")
            self.identity_function = HandlerFunction(
                self, "IdentityProvider", handler="transfer_idp",
                description="Transfer Family identity provider: Secrets Manager users",
                timeout=cdk.Duration.seconds(10), encryption_key=self.key,
                dead_letter_queue=False,  # invoked synchronously by Transfer Family: a DLQ would never receive
                environment={
                    "SECRET_PREFIX": secret_prefix, "USER_ROLE_ARN": self.user_role.role_arn,
                    "BUCKET": self.bucket.bucket_name, "BUCKET_ARN": self.bucket.bucket_arn,
                },
            )
            self.identity_function.role.add_to_policy(iam.PolicyStatement(
                actions=["secretsmanager:GetSecretValue"],
                resources=[cdk.Stack.of(self).format_arn(service="secretsmanager", resource="secret",
                                                         resource_name=f"{secret_prefix}*",
                                                         arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)],
            ))
            acknowledge_wildcards(
                self.identity_function.role,
                "Users are looked up by name under one secret prefix; the set of users is not known at synth time.",
                resources=(ending(f":secret:{secret_prefix}*"),),
            )
            idp_details = transfer.CfnServer.IdentityProviderDetailsProperty(
                function=self.identity_function.function.function_arn,
                sftp_authentication_methods="PUBLIC_KEY_OR_PASSWORD",
            )

        self.server = transfer.CfnServer(
            self, "Server",
            domain="S3" if file_system is None else "EFS",
            endpoint_type="VPC",
            endpoint_details=endpoint,
            protocols=[p.value for p in protocols],
            certificate=certificate_arn,
            security_policy_name=security_policy,
            identity_provider_type=identity_provider.value,
            identity_provider_details=idp_details,
            structured_log_destinations=[_log_arn(self.log_group)],
            s3_storage_options=(
                transfer.CfnServer.S3StorageOptionsProperty(directory_listing_optimization="ENABLED")
                if file_system is None else None
            ),
            pre_authentication_login_banner="Authorized use only. Activity is logged.",
        )
        if self.identity_function is not None:
            self.identity_function.function.add_permission(
                "TransferInvoke", principal=iam.ServicePrincipal("transfer.amazonaws.com"),
                source_arn=self.server.attr_arn,
            )
        self.users: dict[str, transfer.CfnUser] = {}
        for user in users:
            self.users[user.name] = self._user(user)

    @property
    def server_id(self) -> str:
        return self.server.attr_server_id

    def _session_role(self, id: str, description: str) -> iam.Role:
        return iam.Role(
            self, id,
            assumed_by=iam.ServicePrincipal("transfer.amazonaws.com").with_conditions(
                {"StringEquals": {"aws:SourceAccount": cdk.Aws.ACCOUNT_ID}}
            ),
            description=description,
        )

    def _grant_s3(self, lake: IDataLake) -> None:
        self.user_role.add_to_policy(iam.PolicyStatement(actions=["s3:ListBucket", "s3:GetBucketLocation"], resources=[self.bucket.bucket_arn]))
        self.user_role.add_to_policy(iam.PolicyStatement(
            actions=["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectTagging", "s3:PutObject", "s3:PutObjectTagging",
                     "s3:AbortMultipartUpload"],
            resources=[self.bucket.arn_for_objects("*")],
        ))
        if lake.encryption_key is not None:
            lake.encryption_key.grant_encrypt_decrypt(self.user_role)
        acknowledge_wildcards(
            self.user_role,
            "The session role covers the zone's objects; each user's session policy (and logical home directory) "
            "narrows it to that user's own prefix at login. No delete action is granted.",
            actions=KMS_WILDCARD_ACTIONS, resources=(ending("/*"),),
        )

    def _user(self, user: SftpUser) -> transfer.CfnUser:
        mappings = validate_home_mappings(user)
        user_id = f"User{re.sub(r'[^A-Za-z0-9]', '', user.name.title())}"
        if self.file_system is not None:
            root = self.file_system.file_system_id
            role = self.read_only_role if user.read_only else self.user_role
            return transfer.CfnUser(
                self, user_id,
                server_id=self.server.attr_server_id,
                user_name=user.name,
                role=role.role_arn,
                home_directory_type="LOGICAL",
                home_directory_mappings=[
                    transfer.CfnUser.HomeDirectoryMapEntryProperty(entry=entry, target=f"/{root}/{target}", type="DIRECTORY")
                    for entry, target in mappings
                ],
                posix_profile=transfer.CfnUser.PosixProfileProperty(uid=user.posix_uid, gid=user.posix_gid),
                ssh_public_keys=[k.strip() for k in user.ssh_public_keys],
            )
        bucket_name = self.bucket.bucket_name
        return transfer.CfnUser(
            self, user_id,
            server_id=self.server.attr_server_id,
            user_name=user.name,
            role=self.user_role.role_arn,
            home_directory_type="LOGICAL",
            home_directory_mappings=[
                transfer.CfnUser.HomeDirectoryMapEntryProperty(entry=entry, target=f"/{bucket_name}/{target}", type="DIRECTORY")
                for entry, target in mappings
            ],
            policy=cdk.Stack.of(self).to_json_string(session_policy(self.bucket.bucket_arn, user.prefix, read_only=user.read_only)),
            ssh_public_keys=[k.strip() for k in user.ssh_public_keys],
        )


def _log_arn(log_group: logs.ILogGroup) -> str:
    stack = cdk.Stack.of(log_group)
    return stack.format_arn(service="logs", resource="log-group", resource_name=f"{log_group.log_group_name}:*",
                            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)
