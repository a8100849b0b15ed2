"""Sizes, durations and times as a person types and reads them."""

from __future__ import annotations

import re
import time
from typing import Any

_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``"10G"`` -> bytes. K, M, G, T are powers of 1024 (``10G`` = 10 GiB)."""
    match = _SIZE_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"not a size: {text!r}; write e.g. 500M, 10G or 1.5T (powers of 1024)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def parse_duration(text: str) -> float:
    """``"30d"`` -> seconds; s, m, h, d, w (a bare number is seconds)."""
    match = _DURATION_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r}; write e.g. 90s, 15m, 1h, 30d or 2w")
    return float(match.group(1)) * _SECONDS[(match.group(2) or "s").lower()]


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def count(n: int, what: str) -> str:
    """``1 file``, ``2 files``."""
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def human_duration(seconds: float) -> str:
    for unit, length in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length and seconds % length == 0:
            return f"{int(seconds // length)}{unit}"
    return f"{seconds:g}s"


def iso_time(timestamp: float) -> str:
    """UTC, to the second: ``2026-12-02T08:50:12Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def short_time(timestamp: float) -> str:
    """UTC, to the minute, for tables."""
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(timestamp))


def short_class(path: str) -> str:
    """``registry.materializers.path.PathMaterializer`` -> ``PathMaterializer``."""
    return path.rsplit(".", 1)[-1]


def compact(metadata: dict[str, Any], limit: int = 60) -> str:
    """``k=v k2=v2`` on one line, cut at ``limit`` characters."""
    text = " ".join(f"{k}={v}" for k, v in metadata.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def version_span(versions: list[str]) -> str:
    """A short list of versions: all of them when few, else first … last."""
    if len(versions) <= 4:
        return ", ".join(versions)
    return f"{versions[0]} … {versions[-1]} ({len(versions)})"
