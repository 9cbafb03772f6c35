"""The README's bring-up, as deploy/bring-up.sh runs it, on a fresh Temporal dev server this test
starts by hand (no search attributes, no Schedules: what `deploy/temporal` gives an operator), with a
fresh database and the engine worker started as systemd would. It must end with `doctor` all ✅,
five Schedules listed, the warming IPs' workflows running, and no password printed; run twice, the
second run changes nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port
from tests.warmup_support import inventory_text
from workers.devserver import port_open, temporal_binary

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WARMING = ["127.0.62.41", "127.0.62.42"]


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[str]:
    """`temporal server start-dev` by hand: in memory, no custom search attribute registered."""
    port = free_port()
    log = (tmp_path / "temporal.log").open("wb")
    proc = subprocess.Popen([str(temporal_binary()), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port),
                             "--headless", "--log-level", "warn"], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", port):
            assert proc.poll() is None and time.monotonic() < deadline, "dev server did not start"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_bring_up_on_a_fresh_cluster(fresh_cluster: str, tmp_path: Path, postgres_url: str) -> None:
    # a fresh PostgreSQL database whose URL carries a password (trust auth ignores it): never printed
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from models.blocklist import load_catalog
    from tests.servers.mailwizz import MailwizzDouble
    from tests.servers.rbldnsd import Rbldnsd
    from tests.servers.telegram import TelegramDouble

    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    name = f"ee_bringup_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_url).set(database=name, password="Br1ngUp-Secret").render_as_string(hide_password=False)
    inv = tmp_path / "inventory.toml"
    with Rbldnsd.for_catalog(load_catalog()) as bl, TelegramDouble("127.0.62.2") as tg, \
            MailwizzDouble("127.0.62.3") as mw:
        inv.write_text(inventory_text([(WARMING[0], "warming", "week_1", None), (WARMING[1], "warming", "week_2", None),
                                       ("127.0.62.48", "standby", None, None)], tenant="acme")
                       .replace("http://127.0.12.2/api", mw.base_url))
        env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
               "EMAIL_ENGINE_DATABASE_URL": url, "EMAIL_ENGINE_VAR_DIR": str(tmp_path / "var"),
               "EMAIL_ENGINE_TEMPORAL_ADDRESS": fresh_cluster, "EMAIL_ENGINE_TASK_QUEUE": "bring-up",
               "EMAIL_ENGINE_DNS_RESOLVERS": bl.resolver, "EMAIL_ENGINE_TELEGRAM_BOT_TOKEN": tg.state.token,
               "EMAIL_ENGINE_TELEGRAM_BASE_URL": tg.base_url, "EMAIL_ENGINE_TELEGRAM_CHAT_IDS": "-100",
               "EMAIL_ENGINE_MAILWIZZ_KEYS": f"acme={mw.state.api_key}",
               "EMAIL_ENGINE_METRICS_ADDRESS": "", "EMAIL_ENGINE_FLEET_METRICS_ADDRESS": "",
               "INVENTORY": str(inv), "EMAIL_ENGINE": str(BIN / "email-engine")}
        # The worker refuses a database that is not migrated (it exits, by design), so it starts once the
        # schema exists, as after step 1 of a real bring-up; started beside the script it raced the
        # script's `db upgrade` and lost now and then (one more migration, one more chance to lose).
        subprocess.run([str(BIN / "email-engine"), "db", "upgrade"], env=env, cwd=tmp_path, check=True,
                       capture_output=True, timeout=120)
        # the worker, as `systemctl enable --now email-engine-worker@bring-up` starts it
        worker = subprocess.Popen([str(BIN / "email-engine"), "worker"], env=env, cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            first = subprocess.run(["sh", str(REPO / "deploy" / "bring-up.sh")], env=env, cwd=tmp_path,
                                   capture_output=True, text=True, timeout=600)
            out = first.stdout + first.stderr
            assert first.returncode == 0, out
            for step in ("1/7 database", "2/7 inventory", "3/7 Temporal: register", "4/7 Temporal: create",
                         "5/7 worker", "6/7 warmups", "7/7 doctor"):
                assert step in out
            assert "Tenant: registered as Keyword" in out and "IpStatus: registered as Keyword" in out
            assert "schedule blocklist-scan: created" in out and "schedule mailwizz-sync: created" in out
            doctor = out[out.index("7/7 doctor"):]
            assert "❌" not in doctor and "⚠️" not in doctor and "0 warning(s), 0 failure(s)" in doctor, doctor
            assert "Br1ngUp-Secret" not in out and ":***@" in doctor

            def cli(*args: str) -> subprocess.CompletedProcess[str]:
                return subprocess.run([str(BIN / "email-engine"), *args], env=env, cwd=tmp_path,
                                      capture_output=True, text=True, timeout=120)

            schedules = json.loads(cli("schedules", "list", "--json").stdout)
            assert [(s["name"], s["present"], s["paused"]) for s in schedules] == [
                ("blocklist-scan", True, False), ("dns-validation", True, False),
                ("accounting-ingest", True, False), ("mailwizz-sync", True, False), ("active-guard", True, False)]
            assert all(s["next_run"] for s in schedules)
            warmups = json.loads(cli("warmup", "status", "--json").stdout)
            assert sorted(w["address"] for w in warmups) == WARMING
            assert all(w["workflow"] is not None for w in warmups), warmups

            again = subprocess.run(["sh", str(REPO / "deploy" / "bring-up.sh")], env=env, cwd=tmp_path,
                                   capture_output=True, text=True, timeout=600)
            out2 = again.stdout + again.stderr
            assert again.returncode == 0, out2
            assert "Tenant: already registered" in out2 and out2.count(": unchanged (") == 5
            assert "0 started, 2 already running" in out2, out2
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=60)
            if worker.stdout:
                worker.stdout.close()
    from activities import db

    db.dispose_engines()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
