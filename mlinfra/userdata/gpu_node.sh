#!/bin/bash
# mlinfra GPU training node bootstrap (rendered by mlinfra.userdata.render_gpu_node_script).
# Mounts the Lustre cache, sets the NCCL/EFA environment and runs the GPU health check. The install part
# before it (node_install.sh) brings the EFA software and the Lustre client; the AMI carries the NVIDIA driver.
# On failure the node is marked unhealthy (/var/lib/mlinfra/unhealthy), counted (CloudWatch metric
# UnhealthyNode, which the cluster's alarm watches so a node that keeps failing cannot loop unseen), tagged
# (mlinfra:gpu-health=unhealthy) and, with ON_FAILURE=shutdown, powered off: the launch template terminates it
# on shutdown, so the scheduler replaces it. A systemd timer repeats the light checks every 15 minutes; a
# failure then drains the ECS container instance (no new jobs) instead of killing running ones.
set -uo pipefail

LUSTRE_DNS="@@LUSTRE_DNS@@"
LUSTRE_MOUNT_NAME="@@LUSTRE_MOUNT_NAME@@"
LUSTRE_MOUNT_POINT="@@LUSTRE_MOUNT_POINT@@"
PROFILES='@@PROFILES@@'
METRIC_NAMESPACE="@@METRIC_NAMESPACE@@"
CLUSTER_ID="@@CLUSTER_ID@@"
DCGM_LEVEL="@@DCGM_LEVEL@@"
MIN_DRIVER="@@MIN_DRIVER@@"
EFA_ENABLED="@@EFA_ENABLED@@"
ON_FAILURE="@@ON_FAILURE@@"
STATE_DIR=/var/lib/mlinfra

mkdir -p "$STATE_DIR" /opt/mlinfra

log() {
  echo "mlinfra-node: $*" | tee -a /var/log/mlinfra-node.log
  logger -t mlinfra-node -- "$*" 2>/dev/null || true
}

report_failure() {
  # A metric (the cluster's alarm counts them) and a tag on the instance; best effort, never blocks the node.
  local region instance_id
  region=$(imds placement/region) || return 0
  instance_id=$(imds instance-id) || return 0
  aws cloudwatch put-metric-data --region "$region" --namespace "$METRIC_NAMESPACE" --metric-name UnhealthyNode \
    --value 1 --unit Count --dimensions "Cluster=$CLUSTER_ID" >/dev/null 2>&1 || log "could not put the UnhealthyNode metric"
  aws ec2 create-tags --region "$region" --resources "$instance_id" \
    --tags Key=mlinfra:gpu-health,Value=unhealthy >/dev/null 2>&1 || log "could not tag $instance_id"
}

unhealthy() {
  log "UNHEALTHY: $1"
  echo "$1" > "$STATE_DIR/unhealthy"
  report_failure
  if [ "$ON_FAILURE" = "shutdown" ]; then
    log "powering off (the launch template terminates the instance on shutdown)"
    shutdown -h now
  fi
  exit 1
}

imds() {
  local token
  token=$(curl -sf -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 60" http://169.254.169.254/latest/api/token) || return 1
  curl -sf -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"
}

# 1. NCCL / EFA environment for login shells and jobs on the host (containers get it from the job definition).
#    FI_EFA_USE_DEVICE_RDMA stays unset: libfabric uses RDMA where the device has it (forcing it aborts elsewhere).
cat > /etc/profile.d/mlinfra-nccl.sh <<'ENV'
export FI_PROVIDER=efa
export NCCL_DEBUG=WARN
export NCCL_SOCKET_IFNAME=^docker,lo,veth
ENV
if [ "$EFA_ENABLED" = "true" ]; then
  fi_info_bin=$(command -v fi_info || echo /opt/amazon/efa/bin/fi_info)
  "$fi_info_bin" -p efa -t FI_EP_RDM >/dev/null 2>&1 || unhealthy "EFA requested but fi_info finds no efa provider (EFA software missing from the AMI?)"
  log "EFA provider present"
fi

# 2. The Lustre cache (the client comes from the image or the install part).
if [ -n "$LUSTRE_DNS" ]; then
  command -v mount.lustre >/dev/null 2>&1 || unhealthy "no Lustre client (mount.lustre) in the AMI"
  mkdir -p "$LUSTRE_MOUNT_POINT"
  entry="$LUSTRE_DNS@tcp:/$LUSTRE_MOUNT_NAME $LUSTRE_MOUNT_POINT lustre defaults,relatime,flock,_netdev,x-systemd.automount,x-systemd.requires=network.service 0 0"
  grep -qF "$LUSTRE_DNS@tcp:/$LUSTRE_MOUNT_NAME" /etc/fstab || echo "$entry" >> /etc/fstab
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    mountpoint -q "$LUSTRE_MOUNT_POINT" && break
    mount "$LUSTRE_MOUNT_POINT" && break
    log "Lustre mount attempt $attempt failed; retrying"
    sleep 6
  done
  mountpoint -q "$LUSTRE_MOUNT_POINT" || unhealthy "cannot mount Lustre $LUSTRE_DNS@tcp:/$LUSTRE_MOUNT_NAME on $LUSTRE_MOUNT_POINT"
  log "Lustre mounted on $LUSTRE_MOUNT_POINT"
fi

# 3. GPU health: count, persistence, ECC and retired pages, row remapping, XIDs, NVLink, fabric manager, EFA
#    device count, DCGM diagnostics (gpu_health.py, gzip + base64 to fit EC2's 16 KB of user data).
echo '@@GPU_HEALTH_PY_GZ_B64@@' | base64 -d | gunzip > /opt/mlinfra/gpu_health.py
printf '%s' "$PROFILES" > /opt/mlinfra/profiles.json
nvidia-smi -pm 1 >/dev/null 2>&1 || log "could not enable persistence mode"
instance_type=$(imds instance-type) || unhealthy "cannot read the instance type from IMDSv2"
if python3 /opt/mlinfra/gpu_health.py --instance-type "$instance_type" --profiles "$PROFILES" \
    --dcgm-level "$DCGM_LEVEL" --min-driver "$MIN_DRIVER" --report "$STATE_DIR/gpu-health.json" >/dev/null; then
  log "GPU health check passed ($instance_type)"
  rm -f "$STATE_DIR/unhealthy"
else
  unhealthy "GPU health check failed on $instance_type: $(tr -d '\n' < "$STATE_DIR/gpu-health.json" 2>/dev/null | head -c 800)"
fi

# 4. The light checks again every 15 minutes (no DCGM: it needs idle GPUs). A failure counts, tags and drains
#    the ECS container instance, so Batch places no new job on it and running jobs end on their own.
region=$(imds placement/region || true)
instance_id=$(imds instance-id || true)
cat > /opt/mlinfra/health.env <<ENVFILE
INSTANCE_TYPE=$instance_type
REGION=$region
INSTANCE_ID=$instance_id
MIN_DRIVER=$MIN_DRIVER
METRIC_NAMESPACE=$METRIC_NAMESPACE
CLUSTER_ID=$CLUSTER_ID
STATE_DIR=$STATE_DIR
ENVFILE
cat > /opt/mlinfra/gpu-health-periodic.sh <<'PERIODIC'
#!/bin/bash
. /opt/mlinfra/health.env
report="$STATE_DIR/gpu-health-periodic.json"
python3 /opt/mlinfra/gpu_health.py --instance-type "$INSTANCE_TYPE" --profiles "$(cat /opt/mlinfra/profiles.json)" \
  --dcgm-level 0 --min-driver "$MIN_DRIVER" --report "$report" >/dev/null && exit 0
logger -t mlinfra-node "periodic GPU health check failed: $(head -c 800 "$report")"
aws cloudwatch put-metric-data --region "$REGION" --namespace "$METRIC_NAMESPACE" --metric-name UnhealthyNode \
  --value 1 --unit Count --dimensions "Cluster=$CLUSTER_ID" >/dev/null 2>&1
aws ec2 create-tags --region "$REGION" --resources "$INSTANCE_ID" --tags Key=mlinfra:gpu-health,Value=unhealthy >/dev/null 2>&1
meta=$(curl -sf http://localhost:51678/v1/metadata) || exit 1
cluster=$(echo "$meta" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Cluster"])')
arn=$(echo "$meta" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ContainerInstanceArn"])')
aws ecs update-container-instances-state --region "$REGION" --cluster "$cluster" --container-instances "$arn" \
  --status DRAINING >/dev/null 2>&1
exit 1
PERIODIC
chmod 0755 /opt/mlinfra/gpu-health-periodic.sh
SYSTEMD_DIR=/etc/systemd/system
if [ -d "$SYSTEMD_DIR" ] && command -v systemctl >/dev/null 2>&1; then
  printf '[Unit]\nDescription=mlinfra GPU health check\n[Service]\nType=oneshot\nExecStart=%s\n' \
    /opt/mlinfra/gpu-health-periodic.sh > "$SYSTEMD_DIR/mlinfra-gpu-health.service"
  printf '[Unit]\nDescription=mlinfra GPU health check\n[Timer]\nOnBootSec=15min\nOnUnitActiveSec=15min\n[Install]\nWantedBy=timers.target\n' \
    > "$SYSTEMD_DIR/mlinfra-gpu-health.timer"
  { systemctl daemon-reload && systemctl enable --now mlinfra-gpu-health.timer; } >/dev/null 2>&1 || log "could not start the periodic check"
fi
