"""Child-process entry point for the cross-process rotation test (kept light: spawn re-imports it)."""

from __future__ import annotations

from typing import Any


def pick_positions(url: str, n: int, now: float, barrier: Any, queue: Any) -> None:
    """n round-robin picks of rot-a interleaved with n least-used picks of rot-b; reports what it got
    (positions; (address, load seen before the pick) pairs)."""
    from activities import rotation
    from activities.db import dispose_engines

    try:
        rotation.status("rot-b", url=url)  # connect (read-only) before the common start
        barrier.wait(timeout=120)
        positions, least = [], []
        for _ in range(n):
            positions.append(rotation.pick("rot-a", "round_robin", url=url).position)
            chosen = rotation.pick("rot-b", "least_used", url=url, now=now)
            least.append((chosen.address, chosen.load))
        queue.put((positions, least))
    except BaseException as exc:
        queue.put(repr(exc))
    finally:
        dispose_engines()
