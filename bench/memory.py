"""Peak resident memory of this process, from ``/proc/self/status`` (Linux)."""

from __future__ import annotations

from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _field_kib(name: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{name} not in {_STATUS}")


def rss_kib() -> int:
    """Resident set size now."""
    return _field_kib("VmRSS")


def peak_kib() -> int:
    """The resident set's high-water mark (since start, or since :func:`reset_peak`)."""
    return _field_kib("VmHWM")


def reset_peak() -> bool:
    """Lower the high-water mark to the current RSS (Linux >= 4.0); False when refused,
    in which case the mark still includes everything before this call."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True
