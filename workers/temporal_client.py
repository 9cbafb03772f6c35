"""Connecting to Temporal with the engine's settings."""

from __future__ import annotations

from temporalio.client import Client

from models.settings import Settings, get_settings


async def connect(settings: Settings | None = None) -> Client:
    settings = settings or get_settings()
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
