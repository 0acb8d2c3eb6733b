#!/bin/bash
# Prometheus exporters as containers that restart with the node: node_exporter everywhere, NVIDIA's DCGM
# exporter on GPU nodes (DCGM_EXPORTER_IMAGE is empty elsewhere). Idempotent: a running container is kept.
set -euo pipefail
: "${NODE_EXPORTER_IMAGE?}" "${DCGM_EXPORTER_IMAGE?}"

if ! command -v docker >/dev/null 2>&1; then
  echo "exporters: docker is not installed on this image; skipping"
  exit 0
fi

run() {
  local name="$1"; shift
  if docker ps --format '{{.Names}}' | grep -qx "$name"; then
    echo "exporters: $name already running"
    return 0
  fi
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker run -d --restart always --name "$name" "$@"
}

if [[ -n "$NODE_EXPORTER_IMAGE" ]]; then
  run node-exporter --net host --pid host -v /:/host:ro,rslave "$NODE_EXPORTER_IMAGE" --path.rootfs=/host
fi
if [[ -n "$DCGM_EXPORTER_IMAGE" ]]; then
  run dcgm-exporter --gpus all --net host --cap-add SYS_ADMIN "$DCGM_EXPORTER_IMAGE"
fi
