"""PowerMTA backend: the pure renderer plus PowerMTA's commands (`pmta test config`, `pmta reload`)."""

from __future__ import annotations

from collections.abc import Mapping

from activities.mta._common import resolve_config_dir
from activities.mta.base import (
    RenderedConfig,
    Target,
    expected_read_back_common,
    read_back_common,
    register,
    replace_block,
)
from models.enums import MtaBackend
from models.mta_render import powermta as pure
from models.mta_render.dkim_paths import with_deployed_key_paths
from models.settings import get_settings
from models.snapshot import FleetSnapshot


class PowerMtaBackend:
    kind = MtaBackend.POWERMTA
    default_config_dir = "/etc/pmta"
    #: PowerMTA's main file on Linux is /etc/pmta/config (User's Guide 2.3).
    merged_files: tuple[str, ...] = ("config",)

    def render(self, snapshot: FleetSnapshot, config_dir: str | None = None) -> RenderedConfig:
        cdir = resolve_config_dir(self.kind, self.default_config_dir, snapshot, config_dir)
        settings = get_settings()
        acct = pure.AccountingTarget(settings.accounting_dir, settings.accounting_glob)
        files = pure.render(with_deployed_key_paths(snapshot, cdir), cdir, acct)  # keys ship in the release
        return RenderedConfig(backend=self.kind, config_dir=cdir, files=files, notes=pure.notes(snapshot))

    def materialize(self, rendered: RenderedConfig, existing: Mapping[str, str | None]) -> dict[str, str]:
        return {"config": replace_block(existing.get("config"), pure.config_block(rendered.config_dir))}

    def validate_commands(self, config_dir: str) -> list[list[str]]:
        # v5.0 `pmta test config` takes no file argument: it checks the main file and its includes (6.3.38).
        return [["pmta", "test", "config"]]

    def reload_commands(self, config_dir: str) -> list[list[str]]:
        # On a config error the reload fails and the previous in-memory config is kept (6.3.4).
        return [["pmta", "reload"]]

    def verify_commands(self, config_dir: str) -> list[list[str]]:
        return [["pmta", "show", "vmtas"]]

    async def read_back(self, target: Target, config_dir: str) -> dict[str, str]:
        return await read_back_common(self, target, config_dir)

    def expected_read_back(self, rendered: RenderedConfig) -> dict[str, str]:
        return expected_read_back_common(self, rendered)


BACKEND = PowerMtaBackend()
register(MtaBackend.POWERMTA, BACKEND)
