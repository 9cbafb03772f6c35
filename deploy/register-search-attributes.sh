#!/usr/bin/env sh
# Register the engine's custom search attributes (models/search_attributes.py) on a Temporal
# cluster, so the Web UI can filter by tenant, IP, warmup phase and IP status. Idempotent.
#   TEMPORAL_ADDRESS=127.0.0.1:7233 TEMPORAL_NAMESPACE=default deploy/register-search-attributes.sh
# With the compose file: docker compose exec -T temporal-admin-tools sh -s < ../register-search-attributes.sh
# The embedded dev server (`email-engine dev`) registers them itself (--search-attribute).
# TLS, mTLS and API keys: the Temporal CLI reads its own variables (TEMPORAL_TLS_SERVER_CA_CERT_PATH,
# TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH, TEMPORAL_TLS_SERVER_NAME, TEMPORAL_API_KEY);
# deploy/bring-up.sh sets them from the engine's EMAIL_ENGINE_TEMPORAL_* settings.
set -eu
ADDRESS="${TEMPORAL_ADDRESS:-127.0.0.1:7233}"
NAMESPACE="${TEMPORAL_NAMESPACE:-default}"
for name in Tenant IpAddress WarmupPhase IpStatus; do
  if temporal operator search-attribute list --address "$ADDRESS" --namespace "$NAMESPACE" | grep -qw "$name"; then
    echo "$name: already registered"
  else
    temporal operator search-attribute create --address "$ADDRESS" --namespace "$NAMESPACE" \
      --name "$name" --type Keyword
    echo "$name: registered as Keyword"
  fi
done
