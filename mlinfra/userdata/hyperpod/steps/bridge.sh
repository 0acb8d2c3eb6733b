#!/bin/bash
# The Slurm job bridge on the controller: a systemd service that turns Step Functions task requests from the
# cluster's SQS queue into Slurm jobs and reports their end (see slurm_bridge.py). Idempotent: the unit is
# rewritten and restarted only when it changes.
set -euo pipefail
: "${JOB_QUEUE_URL:?}" "${AWS_REGION:?}" "${MLINFRA_SCRIPTS_DIR:?}" "${SHARED_PATH?}"
root="${MLINFRA_ROOT:-}"  # prefixes system paths: empty on a node, a scratch folder in the tests

install -d -m 0755 "$root/opt/mlinfra" "$root/var/lib/mlinfra-bridge" "$root/etc/systemd/system"
install -m 0755 "$MLINFRA_SCRIPTS_DIR/slurm_bridge.py" "$root/opt/mlinfra/slurm_bridge.py"
unit="$root/etc/systemd/system/mlinfra-slurm-bridge.service"
new="$(mktemp)"
cat > "$new" <<UNIT
[Unit]
Description=mlinfra Slurm job bridge (Step Functions tasks to Slurm jobs)
After=network-online.target slurmctld.service remote-fs.target
Wants=network-online.target

[Service]
Environment=MLINFRA_JOB_QUEUE_URL=${JOB_QUEUE_URL}
Environment=AWS_REGION=${AWS_REGION}
Environment=MLINFRA_SHARED_PATH=${SHARED_PATH}
ExecStart=/usr/bin/python3 /opt/mlinfra/slurm_bridge.py
Restart=always
RestartSec=10

[Install]
WantedBy=multi-user.target
UNIT
if ! cmp -s "$new" "$unit"; then
  mv "$new" "$unit"
  systemctl daemon-reload
  systemctl enable mlinfra-slurm-bridge.service
  systemctl restart mlinfra-slurm-bridge.service
else
  rm -f "$new"
  echo "bridge: unit unchanged"
fi
