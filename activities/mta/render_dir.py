"""Writing a rendered MTA config into a local directory (`email-engine mta render`, the run command)."""

from __future__ import annotations

from pathlib import Path


def write_render(out: Path, files: dict[str, str], managed_dir: str) -> list[str]:
    """Write `files` under `out`; remove stale files of the managed dir only. Returns written paths."""
    out.mkdir(parents=True, exist_ok=True)
    managed = out / managed_dir
    if managed.is_dir():
        for p in managed.rglob("*"):
            if p.is_file() and p.relative_to(out).as_posix() not in files:
                p.unlink()
    for rel, text in sorted(files.items()):
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        tmp.write_text(text)
        tmp.replace(dest)
    return sorted(files)
