#!/bin/bash
# Containers in Slurm jobs: enroot (unprivileged container runtime) and pyxis (the srun --container-image
# plugin). Idempotent: what is installed at the pinned version is left alone. Local NVMe holds the image cache
# when the instance has it.
set -euo pipefail
: "${ENROOT_VERSION:?}" "${PYXIS_VERSION:?}"

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
CONF

plugin=/usr/local/lib/slurm/spank_pyxis.so
if [[ ! -f "$root$plugin" ]]; then
  tmp="$(mktemp -d)"
  git clone --depth 1 --branch "v${PYXIS_VERSION}" https://github.com/NVIDIA/pyxis.git "$tmp/pyxis"
  make -C "$tmp/pyxis" install
  rm -rf "$tmp"
fi
conf="$root/etc/slurm/plugstack.conf.d/pyxis.conf"
mkdir -p "$(dirname "$conf")"
grep -qsF "$plugin" "$conf" || echo "required $plugin" > "$conf"
