"""Helpers shared by the benchmark scripts (imported from beside them: `python benches/x.py`
puts this folder on `sys.path`)."""

from __future__ import annotations

import json
import platform
from typing import Any


def compact(doc: Any) -> str:
    """Compact JSON text, as the corpus statistics define a document's size."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def cpu_name() -> str:
    """The CPU model (Linux `/proc/cpuinfo`), for the report's machine line."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
