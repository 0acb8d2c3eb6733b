#!/bin/bash
# Check the FSx for Lustre cache at FSX_MOUNT_PATH (idempotent). HyperPod mounts it through the instance group's
# storage configuration before this runs; this step mounts it only if it is missing, and makes the folders the
# Slurm job bridge writes (job logs, bridge state) on the shared file system.
set -euo pipefail
: "${FSX_DNS_NAME:?}" "${FSX_MOUNT_NAME:?}" "${FSX_MOUNT_PATH:?}"

# MLINFRA_ROOT prefixes every system path (empty on a node; a scratch folder in the tests).
root="${MLINFRA_ROOT:-}"
fstab="$root/etc/fstab"
target="$root$FSX_MOUNT_PATH"
source_spec="${FSX_DNS_NAME}@tcp:/${FSX_MOUNT_NAME}"
options="relatime,flock,_netdev,x-systemd.automount,x-systemd.requires=network-online.target"

if ! command -v mount.lustre >/dev/null 2>&1; then
  # The HyperPod AMI (Ubuntu) ships the client; install the one for the running kernel if it is missing.
  apt-get update -q
  apt-get install -y -q "lustre-client-modules-$(uname -r)"
fi

mkdir -p "$target" "$(dirname "$fstab")"
if mountpoint -q "$target"; then
  echo "lustre: $FSX_MOUNT_PATH already mounted"
else
  grep -qsF " ${FSX_MOUNT_PATH} lustre " "$fstab" || \
    printf '%s %s lustre %s 0 0\n' "$source_spec" "$FSX_MOUNT_PATH" "$options" >> "$fstab"
  for attempt in 1 2 3 4 5; do
    if mount -t lustre -o relatime,flock "$source_spec" "$target"; then
      break
    fi
    echo "lustre: mount attempt $attempt failed, retrying"
    sleep $((attempt * 10))
  done
  mountpoint -q "$target" || { echo "lustre: could not mount $source_spec"; exit 1; }
fi
chmod 1777 "$target"
install -d -m 1777 "$target/mlinfra" "$target/mlinfra/jobs"
install -d -m 0700 "$target/mlinfra/bridge"
