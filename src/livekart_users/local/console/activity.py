"""The console's activity: the stack's invocation record, as `livekart-users logs` reads it.

The record (`invocations.jsonl`, written by the local Lambda endpoint) is read incrementally
through `logs.LocalRecord`: each poll reads only the lines added since the last one. The
newest `KEEP` invocations stay in memory, numbered, so a page asks for what came after the
last number it has and gets only that.
"""

from __future__ import annotations

import threading
from collections import deque
from datetime import timedelta
from pathlib import Path
from typing import Any

from livekart_users import logs

KEEP = 500
# Cognito's trigger sources; anything else in the record is a change event's API call.
_TRIGGER_PREFIXES = ("PostConfirmation_", "PostAuthentication_")


class Activity:
    """The newest invocations of the stack's trigger and change handler."""

    def __init__(self, record: Path, keep: int = KEEP) -> None:
        self._record = logs.LocalRecord(record)
        self._kept: deque[tuple[int, dict[str, Any]]] = deque(maxlen=keep)
        self._count = 0
        self._lock = threading.Lock()

    def after(self, seen: int, limit: int = 100) -> dict[str, Any]:
        """Invocations numbered above `seen`, newest first (at most `limit`), and the last
        number: the next poll's `seen`."""
        with self._lock:
            window = self._record.read(timedelta(days=3650), logs.Filters(), None)
            for invocation in window.invocations:
                self._count += 1
                self._kept.append((self._count, _shown(invocation)))
            fresh = [{"seq": n, **i} for n, i in self._kept if n > seen]
            return {"last": self._count, "invocations": fresh[::-1][:limit]}


def _shown(invocation: logs.Invocation) -> dict[str, Any]:
    shown = invocation.as_dict()
    source = invocation.trigger_source or ""
    shown["function"] = "trigger" if source.startswith(_TRIGGER_PREFIXES) else "change handler"
    shown["cold_start"] = invocation.init_duration_ms is not None
    return shown
