#!/bin/bash
# mlinfra GPU training node bootstrap (rendered by mlinfra.userdata.render_gpu_node_script).
# Mounts the Lustre cache, sets the NCCL/EFA environment and runs the GPU health check. The install part
# before it (node_install.sh) brings the EFA software and the Lustre client; the AMI carries the NVIDIA driver. On failure the node is
# marked unhealthy (/var/lib/mlinfra/unhealthy) and, with ON_FAILURE=shutdown, powered off: the launch
# template terminates it on shutdown, so the scheduler (Batch, the ASG) replaces it.
set -uo pipefail

LUSTRE_DNS="@@LUSTRE_DNS@@"
LUSTRE_MOUNT_NAME="@@LUSTRE_MOUNT_NAME@@"
LUSTRE_MOUNT_POINT="@@LUSTRE_MOUNT_POINT@@"
EXPECTED_GPUS_BY_TYPE="@@EXPECTED_GPUS_BY_TYPE@@"
MIN_DRIVER="@@MIN_DRIVER@@"
EFA_ENABLED="@@EFA_ENABLED@@"
ON_FAILURE="@@ON_FAILURE@@"
STATE_DIR=/var/lib/mlinfra

mkdir -p "$STATE_DIR" /opt/mlinfra

log() {
  echo "mlinfra-node: $*" | tee -a /var/log/mlinfra-node.log
  logger -t mlinfra-node -- "$*" 2>/dev/null || true
}

unhealthy() {
  log "UNHEALTHY: $1"
  echo "$1" > "$STATE_DIR/unhealthy"
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

# 3. GPU health: count, uncorrected ECC errors, driver version.
cat > /opt/mlinfra/gpu_health.py <<'MLINFRA_GPU_HEALTH_PY'
@@GPU_HEALTH_PY@@
MLINFRA_GPU_HEALTH_PY
instance_type=$(imds instance-type) || unhealthy "cannot read the instance type from IMDSv2"
if python3 /opt/mlinfra/gpu_health.py --instance-type "$instance_type" --expected-by-type "$EXPECTED_GPUS_BY_TYPE" \
    --min-driver "$MIN_DRIVER" --report "$STATE_DIR/gpu-health.json" >/dev/null; then
  log "GPU health check passed ($instance_type)"
  rm -f "$STATE_DIR/unhealthy"
else
  unhealthy "GPU health check failed on $instance_type: $(tr -d '\n' < "$STATE_DIR/gpu-health.json" 2>/dev/null | head -c 800)"
fi
