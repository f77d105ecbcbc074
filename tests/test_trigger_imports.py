"""The trigger's module pulls in only what a trigger needs: its cold start pays for the rest."""

from __future__ import annotations

import json
import subprocess
import sys

NOT_ON_THE_TRIGGER_PATH = (
    "livekart_users.local",
    "livekart_users.cli",
    "livekart_users.deploy",
    "livekart_users.doctor",
    "livekart_users.reconcile",
    "click",
    "rich",
    "moto",
)


def modules_loaded_by(module: str) -> list[str]:
    """What a fresh interpreter has loaded after importing `module` alone."""
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    command = [sys.executable, "-c", code]
    answer = subprocess.run(command, check=True, capture_output=True, text=True)
    return list(json.loads(answer.stdout))


def test_importing_the_handler_loads_nothing_the_trigger_does_not_use() -> None:
    loaded = modules_loaded_by("livekart_users.triggers")
    unwanted = [m for m in loaded if m.startswith(NOT_ON_THE_TRIGGER_PATH)]
    assert unwanted == []
    assert "livekart_users.table" in loaded


def test_importing_the_change_handler_loads_nothing_it_does_not_use() -> None:
    loaded = modules_loaded_by("livekart_users.changes")
    unwanted = [m for m in loaded if m.startswith(NOT_ON_THE_TRIGGER_PATH)]
    assert unwanted == []
    assert "livekart_users.erasure" in loaded
    assert "livekart_users.triggers" not in loaded  # the sign-up trigger is another function


def test_the_scheduled_reconcile_loads_nothing_of_the_cli_deploy_or_local_stack() -> None:
    loaded = modules_loaded_by("livekart_users.scheduled")
    unwanted = [
        m
        for m in loaded
        if m.startswith(NOT_ON_THE_TRIGGER_PATH) and m != "livekart_users.reconcile"
    ]
    assert unwanted == []
    assert "livekart_users.checkpoint" in loaded
