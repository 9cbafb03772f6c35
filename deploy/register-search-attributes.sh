#!/usr/bin/env sh
# Register the engine's custom search attributes (models/search_attributes.py) on a Temporal
# cluster, so the Web UI can filter by tenant, IP, warmup phase and IP status. Idempotent.
#   TEMPORAL_ADDRESS=127.0.0.1:7233 TEMPORAL_NAMESPACE=default deploy/register-search-attributes.sh
# With the compose file: docker compose exec -T temporal-admin-tools sh -s < ../register-search-attributes.sh
# The embedded dev server (`email-engine dev`) registers them itself (--search-attribute).
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
