#!/bin/bash
# Containers in Slurm jobs: enroot (unprivileged container runtime) and pyxis (the srun --container-image
# plugin). Idempotent: what is installed at the pinned version is left alone. Local NVMe holds the image cache
# when the instance has it.
set -euo pipefail
: "${ENROOT_VERSION:?}" "${PYXIS_VERSION:?}" "${ECR_REGISTRIES?}"

root="${MLINFRA_ROOT:-}"  # prefixes system paths: empty on a node, a scratch folder in the tests
arch="$(dpkg --print-architecture)"
if ! enroot version 2>/dev/null | grep -qx "$ENROOT_VERSION"; then
  base="https://github.com/NVIDIA/enroot/releases/download/v${ENROOT_VERSION}"
  tmp="$(mktemp -d)"
  curl -fsSL -o "$tmp/enroot.deb" "$base/enroot_${ENROOT_VERSION}-1_${arch}.deb"
  curl -fsSL -o "$tmp/enroot-caps.deb" "$base/enroot+caps_${ENROOT_VERSION}-1_${arch}.deb"
  apt-get install -y -q "$tmp/enroot.deb" "$tmp/enroot-caps.deb"
  rm -rf "$tmp"
fi

data=/tmp/enroot
[[ -d "$root/opt/dlami/nvme" ]] && data=/opt/dlami/nvme/enroot
mkdir -p "$root$data/data" "$root$data/cache" "$root$data/tmp" "$root/etc/enroot"
chmod 1777 "$root$data/data" "$root$data/cache" "$root$data/tmp"
cat > "$root/etc/enroot/enroot.conf" <<CONF
ENROOT_RUNTIME_PATH ${data}/runtime/user-\$(id -u)
ENROOT_CACHE_PATH ${data}/cache
ENROOT_DATA_PATH ${data}/data
ENROOT_TEMP_PATH ${data}/tmp
ENROOT_CONFIG_PATH /etc/enroot/config
CONF

# Private ECR images: enroot logs in with the node's role (a fresh token at every import).
mkdir -p "$root/etc/enroot/config"
credentials="$root/etc/enroot/config/.credentials"
: > "$credentials"
for registry in $ECR_REGISTRIES; do
  region="$(cut -d. -f4 <<<"$registry")"
  # enroot evaluates the command substitution when it imports an image, not now.
  # shellcheck disable=SC2016
  printf 'machine %s login AWS password $(aws ecr get-login-password --region %s)\n' "$registry" "$region" >> "$credentials"
done
chmod 0644 "$credentials"

# HyperPod's Slurm lives under /opt/slurm: pyxis builds against its headers and registers through its
# plugstack.conf (an include of plugstack.conf.d; plugstack.conf is not slurm.conf, so managed Slurm's drift check
# does not see it).
slurm=/opt/slurm
plugin=/usr/local/lib/slurm/spank_pyxis.so
if [[ ! -f "$root$plugin" ]]; then
  tmp="$(mktemp -d)"
  git clone --depth 1 --branch "v${PYXIS_VERSION}" https://github.com/NVIDIA/pyxis.git "$tmp/pyxis"
  CPPFLAGS="-I ${slurm}/include/" make -C "$tmp/pyxis" install
  rm -rf "$tmp"
fi
mkdir -p "$root$slurm/etc/plugstack.conf.d"
changed=0
conf="$root$slurm/etc/plugstack.conf.d/pyxis.conf"
if [[ "$(cat "$conf" 2>/dev/null)" != "required $plugin" ]]; then
  echo "required $plugin" > "$conf"
  changed=1
fi
include="include $slurm/etc/plugstack.conf.d/*"
if ! grep -qsxF "$include" "$root$slurm/etc/plugstack.conf"; then
  echo "$include" >> "$root$slurm/etc/plugstack.conf"
  changed=1
fi
# slurmd loads SPANK plugins at start: restart it where it runs (compute nodes) when the plugin was just added.
if [[ $changed == 1 ]] && systemctl is-active --quiet slurmd; then
  systemctl restart slurmd
fi
