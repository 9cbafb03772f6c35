"""Run INSIDE a throwaway user + network namespace (`unshare -rn python tests/netns_firewall.py PLAN`):
load a rendered ruleset for real and report what the kernel does to connections. Never run it any
other way: it loads nftables rules into the namespace it runs in (it refuses to start otherwise).

The namespace ("the host") gets a veth pair to a second namespace ("the network", made with
`unshare -n` from here, so it is owned by the same user namespace): the host has PLAN["host_addresses"],
the network PLAN["peer_addresses"], so traffic crosses a real interface (not `lo`, which the ruleset
accepts). Sockets for the network side are created after `setns` into it and keep that namespace.

PLAN (JSON): {"caller_netns": the starter's /proc/self/ns/net link (refused if it is ours), "ruleset": path,
"operator": nft text loaded first, before any connection (another table, must survive),
"host_addresses": [...], "peer_addresses": [...], "listen": {"host": [ports], "peer": [ports]},
"before": [[src, dst, port]] (connections opened before the ruleset is loaded),
"probes": [[side, src, dst, port]]} (side "in": from the network to the host; "out": from the host).
Prints JSON: {"before": [...], "probes": [...], "tables": [...], "same_after_reload": bool}.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import subprocess
import sys
import time

CLONE_NEWNET = 0x40000000
TIMEOUT = 1.0
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def _family(addr: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


class Net:
    def __init__(self, plan: dict) -> None:  # type: ignore[type-arg]
        _run("ip", "link", "set", "lo", "up")
        self.peer = subprocess.Popen(["unshare", "--net", "sleep", "300"])
        for _ in range(100):  # until the child is in its own namespace
            if os.readlink(f"/proc/{self.peer.pid}/ns/net") != os.readlink("/proc/self/ns/net"):
                break
            time.sleep(0.02)
        _run("ip", "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
        _run("ip", "link", "set", "veth1", "netns", str(self.peer.pid))
        self.home = os.open("/proc/self/ns/net", os.O_RDONLY)
        self.other = os.open(f"/proc/{self.peer.pid}/ns/net", os.O_RDONLY)
        for fd, dev, addrs in ((self.home, "veth0", plan["host_addresses"]),
                               (self.other, "veth1", plan["peer_addresses"])):
            _setns(fd)
            _run("ip", "link", "set", "lo", "up")
            for a in addrs:
                _run("ip", "addr", "add", f"{a}/{64 if ':' in a else 24}", "dev", dev, *(["nodad"] if ":" in a else []))
            _run("ip", "link", "set", dev, "up")
        _setns(self.home)

    def socket(self, side: str, family: socket.AddressFamily) -> socket.socket:
        """A TCP socket in the host's ("host") or the network's ("peer") namespace."""
        if side == "peer":
            _setns(self.other)
        try:
            return socket.socket(family, socket.SOCK_STREAM)
        finally:
            _setns(self.home)

    def listen(self, side: str, port: int) -> list[socket.socket]:
        out = []
        for family, any_addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            s = self.socket(side, family)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((any_addr, port))
            s.listen(16)
            s.setblocking(False)
            out.append(s)
        return out

    def connect(self, side: str, src: str, dst: str, port: int,
                timeout: float = TIMEOUT) -> tuple[str, socket.socket | None]:
        """"open", "timeout" (dropped: no answer) or the error (e.g. EPERM: dropped on output)."""
        s = self.socket(side, _family(src))
        s.bind((src, 0))
        s.settimeout(timeout)
        try:
            s.connect((dst, port))
        except TimeoutError:
            s.close()
            return "timeout", None
        except OSError as err:
            s.close()
            return f"error: {err.strerror or err}", None
        return "open", s

    def close(self) -> None:
        self.peer.kill()
        self.peer.wait()


def _accept_all(listeners: list[socket.socket]) -> list[socket.socket]:
    conns = []
    for s in listeners:
        while True:
            try:
                c, _ = s.accept()
            except BlockingIOError:
                break
            c.settimeout(TIMEOUT)
            conns.append(c)
    return conns


def _alive(client: socket.socket, listeners: list[socket.socket], accepted: list[socket.socket]) -> str:
    """Data both ways over a connection opened before the ruleset was loaded."""
    client.settimeout(TIMEOUT)
    mine = client.getsockname()[:2]
    try:
        server = next(c for c in accepted if c.getpeername()[:2] == mine)
        client.sendall(b"ping")
        if server.recv(4) != b"ping":
            return "broken"
        server.sendall(b"pong")
        return "alive" if client.recv(4) == b"pong" else "broken"
    except (TimeoutError, StopIteration):
        return "timeout"
    except OSError as err:
        return f"error: {err.strerror or err}"


def main(plan_path: str) -> None:
    with open(plan_path) as f:
        plan = json.load(f)
    if os.readlink("/proc/self/ns/net") == plan["caller_netns"]:
        raise SystemExit("refusing to run in the caller's network namespace: start me with `unshare -rn`")
    net = Net(plan)
    try:
        listeners = {side: [s for p in ports for s in net.listen(side, p)] for side, ports in plan["listen"].items()}
        if plan.get("operator"):  # the operator's own table, there before the engine's (and before "before")
            subprocess.run(["nft", "-f", "-"], input=plan["operator"], text=True, check=True)
        before = []
        for src, dst, port in plan["before"]:
            outcome, sock = net.connect("peer", src, dst, port, timeout=10.0)  # links may still come up
            assert outcome == "open" and sock is not None, f"no connection before the ruleset: {outcome}"
            before.append(sock)
        time.sleep(0.1)
        accepted = _accept_all(listeners["host"])
        _run("nft", "-f", plan["ruleset"])
        first = _run("nft", "list", "table", "inet", "email_engine")
        _run("nft", "-f", plan["ruleset"])  # a redeploy: the table is replaced, not doubled
        same = _run("nft", "list", "table", "inet", "email_engine") == first
        result = {"before": [_alive(c, listeners["host"], accepted) for c in before], "probes": [],
                  "tables": sorted(_run("nft", "list", "tables").split("\n")), "same_after_reload": same}
        for side, src, dst, port in plan["probes"]:
            outcome, sock = net.connect("peer" if side == "in" else "host", src, dst, port)
            if sock is not None:
                sock.close()
            result["probes"].append(outcome)
        print(json.dumps(result))
    finally:
        net.close()


if __name__ == "__main__":
    main(sys.argv[1])
