"""deploy/: settings example, production Temporal compose file, Prometheus, systemd units, scripts.

The production cluster (Docker) cannot run here: its YAML structure is validated instead.
"""

from __future__ import annotations

import configparser
import re
import subprocess
from pathlib import Path

import yaml

from cli.main import app
from models.search_attributes import ALL as SEARCH_ATTRIBUTES
from models.settings import Settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_env_example_lists_every_setting() -> None:
    text = (DEPLOY / ".env.example").read_text()
    keys = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = re.match(r"^(EMAIL_ENGINE_[A-Z0-9_]+)=(.*)$", line)
        assert m, f".env.example line {n} is not KEY=VALUE: {line!r}"
        keys[m.group(1)] = m.group(2).split("   #")[0]
    missing = [f"EMAIL_ENGINE_{name.upper()}" for name in Settings.model_fields
               if f"EMAIL_ENGINE_{name.upper()}" not in keys]
    assert not missing, f"add these settings to deploy/.env.example: {missing}"
    unknown = [k for k in keys if k.removeprefix("EMAIL_ENGINE_").lower() not in Settings.model_fields]
    assert not unknown, f"deploy/.env.example lists settings that do not exist: {unknown}"
    # the example itself is a valid configuration (defaults; secrets empty)
    s = Settings(_env_file=str(DEPLOY / ".env.example"))  # type: ignore[call-arg]
    assert s.telegram_bot_token.get_secret_value() == "" and s.mailwizz_keys.get_secret_value() == ""


def _vars(text: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Z_]+)", text))


def test_temporal_compose_structure() -> None:
    path = DEPLOY / "temporal" / "docker-compose.yml"
    text = path.read_text()
    doc = yaml.safe_load(text)
    services = doc["services"]
    assert set(services) == {"postgresql", "temporal", "temporal-admin-tools", "temporal-ui"}
    for name, svc in services.items():
        assert isinstance(svc.get("image"), str) and ":" in svc["image"], name
        for dep in svc.get("depends_on", []):
            assert dep in services, f"{name} depends on unknown {dep}"
        for net in svc.get("networks", []):
            assert net in doc["networks"], f"{name} uses undeclared network {net}"
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./"):
                assert (path.parent / src).exists(), f"{name} mounts missing {src}"
            else:
                assert src in doc["volumes"], f"{name} uses undeclared volume {src}"
        for port in svc.get("ports", []):
            assert port.startswith("${TEMPORAL_BIND:-127.0.0.1}:"), f"{name} publishes {port} on all interfaces"
    env = dict(e.split("=", 1) for e in services["temporal"]["environment"])
    assert env["DB"] == "postgres12"  # SQL advanced visibility: custom search attributes without Elasticsearch
    assert env["POSTGRES_SEEDS"] == "postgresql"
    assert env["DYNAMIC_CONFIG_FILE_PATH"] == "config/dynamicconfig/production.yaml"
    assert (path.parent / "dynamicconfig" / "production.yaml").exists()
    assert yaml.safe_load((path.parent / "dynamicconfig" / "production.yaml").read_text())
    assert services["temporal"]["depends_on"]["postgresql"]["condition"] == "service_healthy"
    assert "temporalio/ui:" in services["temporal-ui"]["image"]
    # every variable is documented in the header comment
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    for var in _vars(text) - {"POSTGRES_VERSION"}:
        assert var in header, f"{var} is not documented in the compose file's header"


def test_search_attribute_script() -> None:
    script = DEPLOY / "register-search-attributes.sh"
    subprocess.run(["sh", "-n", str(script)], check=True)
    text = script.read_text()
    for key in SEARCH_ATTRIBUTES:
        assert re.search(rf"\b{key.name}\b", text), key.name
    assert "--type Keyword" in text and "temporal operator search-attribute create" in text


def test_prometheus_config_scrapes_the_default_endpoints() -> None:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in doc["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    defaults = Settings.model_fields
    assert defaults["metrics_address"].default in targets
    assert defaults["fleet_metrics_address"].default in targets
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    metrics_src = "".join((DEPLOY.parent / "workers" / f).read_text() for f in ("metrics.py", "fleet_gauges.py"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            for name in re.findall(r"email_engine_[a-z0-9_]+", rule["expr"]):
                assert f'"{name}"' in metrics_src, f"alert uses unknown metric {name}"


def test_systemd_units() -> None:
    commands = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert {u.name for u in units} >= {"email-engine-worker@.service", "email-engine-mta-worker.service",
                                       "email-engine-bot.service"}
    for unit in units:
        cp = configparser.ConfigParser(strict=False, interpolation=None)
        cp.optionxform = str  # type: ignore[assignment,method-assign]
        cp.read_string(unit.read_text())
        assert set(cp.sections()) == {"Unit", "Service", "Install"}, unit.name
        exec_start = cp["Service"]["ExecStart"].split()
        assert exec_start[0].endswith("/email-engine") and exec_start[1] in commands, unit.name
        assert cp["Service"]["EnvironmentFile"] == "/etc/email-engine/email-engine.env"
        assert cp["Install"]["WantedBy"] == "multi-user.target"
    worker = (DEPLOY / "systemd" / "email-engine-worker@.service").read_text()
    assert "EMAIL_ENGINE_TASK_QUEUE=%i" in worker
    # the Schedules are created or updated before the worker polls (same code as `email-engine dev`)
    assert "\nExecStartPre=/opt/email-engine/.venv/bin/email-engine schedules apply\n" in worker
    assert "schedules" in {g.name for g in app.registered_groups}


def test_systemd_units_verify() -> None:
    """systemd's own parser, where installed: only the absent install path may be reported."""
    from tests.support import require_tool

    tool = require_tool("systemd-analyze")
    units = [str(u) for u in sorted((DEPLOY / "systemd").glob("*.service"))]
    proc = subprocess.run([tool, "verify", *units], capture_output=True, text=True, timeout=120)
    problems = [line for line in (proc.stdout + proc.stderr).splitlines()
                if line.strip() and "/opt/email-engine/.venv/bin/email-engine is not executable" not in line]
    assert not problems, problems
