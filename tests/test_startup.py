"""A command loads only what it needs: `users get --json` never imports deploy, doctor, the
local stack, powertools or rich (their cost is measured in bench/cli_bench.py)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
from click.testing import CliRunner
from livekart_users.cli import main
result = CliRunner().invoke(main, ["users", "get", "--help"])
assert result.exit_code == 0, result.output
command = main.get_command(None, "users").get_command(None, "get")
print(json.dumps(sorted(sys.modules)))
"""

HEAVY = (
    "livekart_users.deploy",
    "livekart_users.doctor",
    "livekart_users.local",
    "livekart_users.reconcile",
    "aws_lambda_powertools",
    "rich",
)


def test_users_get_loads_none_of_the_other_commands_and_no_rich() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "livekart_users.cli.users" in loaded
    assert [m for m in loaded if m.split(".")[0] in HEAVY or m.startswith(HEAVY)] == []
