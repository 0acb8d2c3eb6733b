#!/bin/bash
# mlinfra GPU node software (rendered by mlinfra.userdata.render_node_install_script): installs what the ECS
# GPU-optimized Amazon Linux 2023 image lacks for multi-node training, the EFA software and the Lustre client,
# as the public AWS Batch EFA templates do. Idempotent: each piece is skipped when present (a baked image
# carries both and installs nothing). Runs before the bootstrap part (mount, health check) and before the ECS
# agent starts.
set -euo pipefail

EFA_ENABLED="@@EFA_ENABLED@@"
EFA_INSTALLER_VERSION="@@EFA_INSTALLER_VERSION@@"

log() {
  echo "mlinfra-install: $*" | tee -a /var/log/mlinfra-node.log
}

if [ "$EFA_ENABLED" = "true" ] && [ ! -x /opt/amazon/efa/bin/fi_info ]; then
  log "installing the EFA software (aws-efa-installer-$EFA_INSTALLER_VERSION)"
  work=$(mktemp -d)
  curl -fsSL --retry 5 -o "$work/efa.tar.gz" \
    "https://efa-installer.amazonaws.com/aws-efa-installer-$EFA_INSTALLER_VERSION.tar.gz"
  tar -xzf "$work/efa.tar.gz" -C "$work"
  (cd "$work/aws-efa-installer" && ./efa_installer.sh -y)
  rm -rf "$work"
else
  log "EFA software present or not requested: skipped"
fi

if ! command -v mount.lustre >/dev/null 2>&1; then
  log "installing the Lustre client"
  dnf install -y lustre-client
else
  log "Lustre client present: skipped"
fi
