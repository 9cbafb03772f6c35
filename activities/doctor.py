"""The doctor's probes outside Temporal: database, DNS resolvers and blocklist self-test, SSH to the
enabled MTA hosts, Telegram, MailWizz. Each returns models.doctor Checks; none raises, none prints a
secret (every message goes through Settings.redact)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from models import doctor as dm
from models.doctor import Check
from models.settings import Settings


def _short(err: BaseException, settings: Settings) -> str:
    err = getattr(err, "orig", None) or err  # SQLAlchemy: the driver's message, not the statement
    text = " ".join(str(err).split()) or type(err).__name__
    return settings.redact(text)[:300]


# --- database ---------------------------------------------------------------------------------------

def database_checks(settings: Settings) -> list[Check]:
    """Reachable (SELECT 1) and at the migrations' head; a missing SQLite file is not created."""
    from sqlalchemy import text

    from activities import db

    url = settings.resolved_database_url()
    shown = settings.display_database_url()
    if db.sqlite_file_missing(url):
        return [dm.fail("database", "reachable", f"{shown}: the file does not exist",
                        "run `email-engine db upgrade` (creates it), or fix EMAIL_ENGINE_DATABASE_URL")]
    try:
        with db.get_engine(url).connect() as conn:
            conn.execute(text("SELECT 1"))
        current = db.current_revision(url)
    except Exception as err:
        return [dm.fail("database", "reachable", f"{shown}: {_short(err, settings)}",
                        "start the database or fix EMAIL_ENGINE_DATABASE_URL")]
    return [dm.ok("database", "reachable", shown), dm.migration(current, db.head_revision().split(","))]


# --- DNS --------------------------------------------------------------------------------------------

async def _answers(host: str, port: int, timeout: float) -> str | None:
    """None when the server answers a query at all (any rcode: it is alive), else why not."""
    import dns.asyncquery
    import dns.exception
    import dns.message

    query = dns.message.make_query(".", "NS")
    try:
        await dns.asyncquery.udp(query, host, port=port, timeout=timeout)
    except dns.exception.Timeout:
        return f"no answer within {timeout:g} s"
    except (OSError, dns.exception.DNSException) as err:
        return str(err) or type(err).__name__
    return None


async def dns_checks(settings: Settings) -> list[Check]:
    from activities.blocklists import self_test_zones
    from activities.dnsbl_resolver import system_resolvers

    try:
        configured = settings.resolvers()
    except ValueError as err:
        return [dm.fail("dns", "resolvers configured", str(err), "fix EMAIL_ENGINE_DNS_RESOLVERS (host[:port],...)")]
    servers = configured or system_resolvers()
    checks = dm.resolvers_configured(servers, bool(configured))
    if not servers:
        return checks
    errors = await asyncio.gather(*(_answers(h, p, settings.dns_timeout) for h, p in servers))
    checks += [dm.resolver_answers(f"{h}:{p}", e) for (h, p), e in zip(servers, errors, strict=True)]
    try:
        usable, broken = await self_test_zones(settings)
    except Exception as err:
        checks.append(dm.fail("dns", "blocklist self-test", _short(err, settings),
                              "check EMAIL_ENGINE_BLOCKLIST_CATALOG and EMAIL_ENGINE_DNS_RESOLVERS"))
    else:
        checks.append(dm.self_test(usable, {b.zone: b.reason for b in broken}))
    return checks


# --- SSH --------------------------------------------------------------------------------------------

def _known_host_entry(path: Path, address: str, port: int) -> bool:
    import asyncssh

    try:
        trusted, _, _, _, _, _, _ = asyncssh.read_known_hosts(str(path)).match(
            address if port == 22 else f"[{address}]:{port}", address, port)
    except (OSError, ValueError, asyncssh.Error):
        return False
    return bool(trusted)


async def ssh_checks(settings: Settings, url: str | None = None) -> list[Check]:
    """Per enabled MTA host (not run locally): known_hosts has its key, our key exists, and a real
    login succeeds with the host key checked (a different key is refused, as a deploy would be)."""
    from activities.mta.ssh import HostKeyMismatch, SshEndpoint, SshLoginRefused, connect
    from activities.snapshot import load_snapshot

    try:
        hosts = [h for h in load_snapshot(url).hosts if h.enabled]
    except Exception as err:
        return [dm.fail("ssh", "MTA hosts", f"inventory unreadable: {_short(err, settings)}",
                        "fix the database first")]
    local = {h.strip() for h in settings.mta_local_hosts.split(",") if h.strip()}
    if not hosts:
        return [dm.ok("ssh", "MTA hosts", "no enabled MTA host: nothing is deployed over SSH")]
    checks = []
    for host in hosts:
        name = f"MTA host {host.name}"
        if host.name in local:
            checks.append(dm.ok("ssh", name, "runs on this machine (EMAIL_ENGINE_MTA_LOCAL_HOSTS): no SSH"))
            continue
        ep = SshEndpoint.for_host(host, settings)
        where = f"{ep.address}:{ep.port}"
        if not ep.known_hosts.is_file():
            checks.append(dm.fail("ssh", name, f"known_hosts {ep.known_hosts} does not exist",
                                  f"ssh-keyscan -p {ep.port} {ep.address} >> {ep.known_hosts} (check the fingerprint)"))
            continue
        if not _known_host_entry(ep.known_hosts, ep.address, ep.port):
            checks.append(dm.fail("ssh", name, f"{where} is not in {ep.known_hosts}",
                                  f"ssh-keyscan -p {ep.port} {ep.address} >> {ep.known_hosts} (check the fingerprint)"))
            continue
        if not ep.key_path.is_file():
            checks.append(dm.fail("ssh", name, f"private key {ep.key_path} does not exist",
                                  "create it (ssh-keygen -t ed25519) or set EMAIL_ENGINE_SSH_KEY_PATH"))
            continue
        try:
            conn = await connect(ep)
        except HostKeyMismatch as err:
            checks.append(dm.fail("ssh", name, f"host key does not match: {_short(err, settings)}",
                                  f"verify the host, then replace its line in {ep.known_hosts}"))
            continue
        except SshLoginRefused as err:
            checks.append(dm.fail("ssh", name, _short(err, settings),
                                  f"add {ep.key_path}.pub to ~{ep.user}/.ssh/authorized_keys on {host.name}"))
            continue
        except Exception as err:
            checks.append(dm.fail("ssh", name, _short(err, settings),
                                  f"check that sshd listens on {where} and the firewall lets us in"))
            continue
        conn.close()
        checks.append(dm.ok("ssh", name, f"{ep.describe()}: host key matches, login works"))
    return checks


# --- Telegram ---------------------------------------------------------------------------------------

async def telegram_checks(settings: Settings) -> list[Check]:
    """The token is valid (getMe) and each alert chat is reachable (getChat); the token is never shown."""
    from telegram.error import InvalidToken, TelegramError

    from activities.telegram import make_bot
    from models.alerting import parse_id_list

    token = settings.telegram_bot_token.get_secret_value()
    if not token:
        return [dm.warn("telegram", "bot token", "not set: alerts go to the log only",
                        "set EMAIL_ENGINE_TELEGRAM_BOT_TOKEN (from @BotFather) and EMAIL_ENGINE_TELEGRAM_CHAT_IDS")]
    try:
        chats = sorted(parse_id_list(settings.telegram_chat_ids, "EMAIL_ENGINE_TELEGRAM_CHAT_IDS"))
    except ValueError as err:
        return [dm.fail("telegram", "chats", str(err), "fix EMAIL_ENGINE_TELEGRAM_CHAT_IDS (comma-separated ids)")]
    bot = make_bot(token, settings.telegram_base_url, timeout=10.0)
    checks = []
    try:
        async with bot:
            me = await bot.get_me()
            checks.append(dm.ok("telegram", "bot token", f"valid (@{me.username})"))
            if not chats:
                checks.append(dm.warn("telegram", "chats", "EMAIL_ENGINE_TELEGRAM_CHAT_IDS is empty: no alert is sent",
                                      "add the bot to the operators' chat and set its id"))
            for chat in chats:
                try:
                    await bot.get_chat(chat)
                except TelegramError as err:
                    checks.append(dm.fail("telegram", f"chat {chat}", f"not reachable: {_short(err, settings)}",
                                          "add the bot to that chat (or fix EMAIL_ENGINE_TELEGRAM_CHAT_IDS)"))
                else:
                    checks.append(dm.ok("telegram", f"chat {chat}", "reachable"))
    except InvalidToken:
        return [dm.fail("telegram", "bot token", "rejected by the Bot API (not shown)",
                        "set EMAIL_ENGINE_TELEGRAM_BOT_TOKEN to the token @BotFather gave")]
    except TelegramError as err:
        return [*checks, dm.fail("telegram", "Bot API", f"{settings.telegram_base_url}: {_short(err, settings)}",
                                  "check the network path to the Bot API (EMAIL_ENGINE_TELEGRAM_BASE_URL)")]
    return checks


# --- MailWizz ---------------------------------------------------------------------------------------

async def mailwizz_checks(settings: Settings, url: str | None = None) -> list[Check]:
    """Per tenant with a MailWizz server in the inventory: a key is set and MailWizz accepts it."""
    from activities.mailwizz import MailwizzClient, tenant_mailwizz
    from activities.snapshot import load_snapshot
    from models.mailwizz import MailwizzAuthError, MailwizzError, parse_keys

    try:
        tenants = [t.name for t in load_snapshot(url).tenants if t.mailwizz_url]
        keys = parse_keys(settings.mailwizz_keys.get_secret_value())
    except ValueError as err:
        return [dm.fail("mailwizz", "keys", _short(err, settings), "fix EMAIL_ENGINE_MAILWIZZ_KEYS")]
    except Exception as err:
        return [dm.fail("mailwizz", "tenants", f"inventory unreadable: {_short(err, settings)}",
                        "fix the database first")]
    if not tenants:
        return [dm.ok("mailwizz", "tenants", "no tenant has a MailWizz server in the inventory")]
    checks = []
    for tenant in tenants:
        name = f"key of {tenant}"
        if tenant not in keys:
            checks.append(dm.warn("mailwizz", name, "no key: this tenant's MailWizz is not read (no stats, "
                                  "no delivery-server check)", f"add {tenant}=KEY to EMAIL_ENGINE_MAILWIZZ_KEYS"))
            continue
        info = await asyncio.to_thread(tenant_mailwizz, tenant, url)
        try:
            async with MailwizzClient(info.base_url, keys[tenant], timeout=settings.mailwizz_timeout,
                                      attempts=1) as mw:
                servers = await mw.delivery_servers()
        except MailwizzAuthError:
            checks.append(dm.fail("mailwizz", name, f"rejected by {info.base_url} (401)",
                                  f"create an API key in {tenant}'s MailWizz and put it in EMAIL_ENGINE_MAILWIZZ_KEYS"))
        except MailwizzError as err:
            checks.append(dm.fail("mailwizz", name, f"{info.base_url}: {_short(err, settings)}",
                                  "check MailWizz is up, its API enabled, and the inventory's base_url"))
        else:
            checks.append(dm.ok("mailwizz", name, f"valid ({len(servers)} delivery server(s) at {info.base_url})"))
    return checks

