"""Browser check: headless Chromium opens the dev server's Web UI filtered by tenant and sees that
tenant's warmup workflows (and not the other tenant's). The screenshot is kept in tests/artifacts/."""

from __future__ import annotations

import subprocess
import urllib.parse
from pathlib import Path

from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from models.search_attributes import IP_ADDRESS, TENANT, WARMUP_PHASE
from tests.support import free_port, require_tool
from workers import devserver

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
FLEET = {"client-1": ["45.123.10.41", "45.123.10.42"], "client-2": ["45.124.20.41", "45.124.20.43"]}


def chromium(binary: str, profile: Path, *args: str) -> str:
    proc = subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


async def test_web_ui_lists_the_tenants_warmups(tmp_path: Path) -> None:
    binary = require_tool("chromium", "/usr/bin/chromium")
    port, ui_port = free_port(), free_port()
    server = devserver.start(tmp_path / "temporal.db", port=port, ui_port=ui_port, log_file=tmp_path / "temporal.log")
    try:
        client = await Client.connect(f"127.0.0.1:{port}")
        # Warmup executions as the warmup feature starts them (type, id, search attributes, memo). No
        # worker runs here: the UI lists executions from visibility, which is what this checks.
        for tenant, ips in FLEET.items():
            for n, ip in enumerate(ips):
                await client.start_workflow(
                    "IpWarmupWorkflow", id=f"warmup/{tenant}/{ip}", task_queue="webui-check-no-worker",
                    memo={"tenant": tenant, "ip": ip, "domain": f"mail-{n}.{tenant}.example"},
                    search_attributes=TypedSearchAttributes([
                        SearchAttributePair(TENANT, tenant), SearchAttributePair(IP_ADDRESS, ip),
                        SearchAttributePair(WARMUP_PHASE, f"week_{n + 2}")]))
        query = urllib.parse.quote('Tenant="client-2"')
        url = f"http://127.0.0.1:{ui_port}/namespaces/default/workflows?query={query}"
        for _attempt in range(3):  # visibility and the UI's first load are eventually consistent
            dom = chromium(binary, tmp_path / "profile-dom", "--dump-dom", url)
            if all(f"warmup/client-2/{ip}" in dom for ip in FLEET["client-2"]):
                break
        for ip in FLEET["client-2"]:
            assert f"warmup/client-2/{ip}" in dom
        for ip in FLEET["client-1"]:
            assert f"warmup/client-1/{ip}" not in dom  # filtered out by the tenant query
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "webui-tenant-client-2.png"
        shot.unlink(missing_ok=True)
        chromium(binary, tmp_path / "profile-shot", "--window-size=1400,900", f"--screenshot={shot}", url)
        assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    finally:
        devserver.stop(server)
