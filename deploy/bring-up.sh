#!/usr/bin/env sh
# Bring up Email Engine on a fresh Temporal cluster (README "Operations guide"), step by step, and end
# with the preflight doctor. Idempotent: every step can run again and changes only what is missing.
#
#   set -a; . /etc/email-engine/email-engine.env; set +a      # the engine's settings (EMAIL_ENGINE_*)
#   INVENTORY=/etc/email-engine/inventory.toml \
#   EMAIL_ENGINE=/opt/email-engine/.venv/bin/email-engine \
#   WORKER_START="systemctl enable --now email-engine-worker@email-engine" \
#   deploy/bring-up.sh
#
# INVENTORY     the fleet's inventory file (required)
# EMAIL_ENGINE  the engine's command (default: email-engine on PATH)
# WORKER_START  how to start the engine worker (default: none; then a worker must already run)
# TEMPORAL      the Temporal CLI for the search attributes (default: temporal on PATH); it is given the
#               engine's address, namespace and TLS settings through its own TEMPORAL_* variables.
set -eu
EE="${EMAIL_ENGINE:-email-engine}"
INVENTORY="${INVENTORY:?set INVENTORY to the inventory file}"
HERE="$(cd "$(dirname "$0")" && pwd)"

echo "== 1/7 database: apply the migrations"
$EE db upgrade

echo "== 2/7 inventory: load $INVENTORY (the whole file or nothing)"
$EE inventory load "$INVENTORY"

echo "== 3/7 Temporal: register the search attributes (Tenant, IpAddress, WarmupPhase, IpStatus)"
export TEMPORAL_ADDRESS="${EMAIL_ENGINE_TEMPORAL_ADDRESS:-127.0.0.1:7233}"
export TEMPORAL_NAMESPACE="${EMAIL_ENGINE_TEMPORAL_NAMESPACE:-default}"
[ -n "${EMAIL_ENGINE_TEMPORAL_TLS_CA_FILE:-}" ] && export TEMPORAL_TLS_SERVER_CA_CERT_PATH="$EMAIL_ENGINE_TEMPORAL_TLS_CA_FILE"
[ -n "${EMAIL_ENGINE_TEMPORAL_TLS_CERT_FILE:-}" ] && export TEMPORAL_TLS_CLIENT_CERT_PATH="$EMAIL_ENGINE_TEMPORAL_TLS_CERT_FILE"
[ -n "${EMAIL_ENGINE_TEMPORAL_TLS_KEY_FILE:-}" ] && export TEMPORAL_TLS_CLIENT_KEY_PATH="$EMAIL_ENGINE_TEMPORAL_TLS_KEY_FILE"
[ -n "${EMAIL_ENGINE_TEMPORAL_TLS_SERVER_NAME:-}" ] && export TEMPORAL_TLS_SERVER_NAME="$EMAIL_ENGINE_TEMPORAL_TLS_SERVER_NAME"
[ -n "${EMAIL_ENGINE_TEMPORAL_API_KEY:-}" ] && export TEMPORAL_API_KEY="$EMAIL_ENGINE_TEMPORAL_API_KEY"
case "${EMAIL_ENGINE_TEMPORAL_TLS:-false}" in true|1|yes) export TEMPORAL_TLS=true;; esac
if [ -n "${TEMPORAL:-}" ]; then
  PATH="$(dirname "$TEMPORAL"):$PATH"
fi
sh "$HERE/register-search-attributes.sh"

echo "== 4/7 Temporal: create or update the Schedules"
$EE schedules apply

echo "== 5/7 worker"
if [ -n "${WORKER_START:-}" ]; then
  sh -c "$WORKER_START"
else
  echo "WORKER_START not set: a worker must already poll ${EMAIL_ENGINE_TASK_QUEUE:-email-engine} (doctor checks it)"
fi

echo "== 6/7 warmups: one workflow per IP the inventory records as warming"
$EE warmup start --all-warming

echo "== 7/7 doctor"
$EE doctor
