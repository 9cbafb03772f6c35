"""Deterministic orchestration only: warmup, failover saga, scans, MTA deploys."""
