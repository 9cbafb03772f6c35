"""Postfix backend: the pure renderer (models/mta_render/postfix.py) plus Postfix's commands."""

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
from models.mta_render import postfix as pure
from models.mta_render.dkim_paths import with_deployed_key_paths
from models.snapshot import FleetSnapshot


class PostfixBackend:
    kind = MtaBackend.POSTFIX
    default_config_dir = "/etc/postfix"
    merged_files: tuple[str, ...] = ("main.cf", "master.cf")

    def render(self, snapshot: FleetSnapshot, config_dir: str | None = None) -> RenderedConfig:
        cdir = resolve_config_dir(self.kind, self.default_config_dir, snapshot, config_dir)
        notes = tuple(f"tenant {t.name} has no active or warming IP" for t in snapshot.tenants if not t.sending_ips)
        files = pure.render(with_deployed_key_paths(snapshot, cdir), cdir)  # keys ship in the release
        return RenderedConfig(backend=self.kind, config_dir=cdir, files=files, notes=notes)

    def materialize(self, rendered: RenderedConfig, existing: Mapping[str, str | None]) -> dict[str, str]:
        return {
            name: replace_block(existing.get(name), rendered.files[f"{pure.MANAGED}/{name}"])
            for name in self.merged_files
        }

    @staticmethod
    def _c(config_dir: str) -> list[str]:
        return [] if config_dir == "/etc/postfix" else ["-c", config_dir]

    def validate_commands(self, config_dir: str) -> list[list[str]]:
        # `postconf -n`/`-M` parse main.cf and master.cf (exit non-zero on a fatal parse error);
        # `postfix check` checks ownership/permissions (it is not a full syntax validator).
        c = self._c(config_dir)
        return [["postconf", *c, "-n"], ["postconf", *c, "-M"], ["postfix", *c, "check"]]

    def reload_commands(self, config_dir: str) -> list[list[str]]:
        return [["postfix", *self._c(config_dir), "reload"]]

    def verify_commands(self, config_dir: str) -> list[list[str]]:
        return [["postfix", *self._c(config_dir), "status"]]

    async def read_back(self, target: Target, config_dir: str) -> dict[str, str]:
        return await read_back_common(self, target, config_dir)

    def expected_read_back(self, rendered: RenderedConfig) -> dict[str, str]:
        return expected_read_back_common(self, rendered)


BACKEND = PostfixBackend()
register(MtaBackend.POSTFIX, BACKEND)
