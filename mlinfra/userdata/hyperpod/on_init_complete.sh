#!/bin/bash
# SageMaker HyperPod lifecycle extension (mlinfra), the lifecycle configuration's OnInitComplete script: HyperPod
# runs it as root on every node it creates or replaces, from a copy of this folder, AFTER configuring its own
# software (Slurm, the FSx mount) on the node. lifecycle.py decides the steps of this node's instance group; each step
# is idempotent. Output goes to HyperPod's CloudWatch log stream for the node.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf '[mlinfra-lifecycle] %s\n' "$*"; }

steps="$(python3 "$here/lifecycle.py" plan)"
log "steps for this node: ${steps//$'\n'/ }"
for step in $steps; do
  script="$here/steps/$step.sh"
  [[ -f "$script" ]] || { log "missing step script $script"; exit 1; }
  log "step $step: start"
  # The step's settings, KEY=value lines already shell-quoted by lifecycle.py.
  settings="$(python3 "$here/lifecycle.py" env "$step")"
  ( set -a; eval "$settings"; set +a; bash "$script" )
  log "step $step: done"
done
log "all steps done"
