"""Setting environment variables in the user's shell: POSIX sh, fish, PowerShell or cmd.

`local env` prints the stack's variables in the form the shell that runs it understands, and
`local up` says how to load them. The shell is named with `--shell`, or found by walking up
from this process to the first ancestor that is a known shell (the launcher pipx or a venv
puts in between is skipped); failing that, PowerShell on Windows and POSIX sh elsewhere.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterable, Mapping

import psutil

SHELLS = ("posix", "fish", "powershell", "cmd")
_NAMES = {
    "sh": "posix",
    "bash": "posix",
    "zsh": "posix",
    "dash": "posix",
    "ksh": "posix",
    "ash": "posix",
    "fish": "fish",
    "pwsh": "powershell",
    "powershell": "powershell",
    "cmd": "cmd",
}


def from_process_names(names: Iterable[str], platform: str = sys.platform) -> str:
    """The shell among `names` (this process's ancestors, nearest first), else the default."""
    for name in names:
        stem = os.path.basename(name).lower().removesuffix(".exe").lstrip("-")
        if stem in _NAMES:
            return _NAMES[stem]
    return "powershell" if platform == "win32" else "posix"


def detect(max_depth: int = 6) -> str:
    """The shell that ran this command, as far as the process tree tells."""
    names: list[str] = []
    try:
        process = psutil.Process().parent()
        while process is not None and len(names) < max_depth:
            names.append(process.name())
            process = process.parent()
    except psutil.Error:
        pass
    return from_process_names(names)


def exports(variables: Mapping[str, str], shell: str) -> list[str]:
    """One line per variable that sets it in `shell`."""
    if shell == "powershell":
        return [f"$env:{k} = '{v.replace(chr(39), chr(39) * 2)}'" for k, v in variables.items()]
    if shell == "cmd":
        return [f'set "{k}={v}"' for k, v in variables.items()]
    if shell == "fish":
        return [f"set -gx {k} {shlex.quote(v)}" for k, v in variables.items()]
    return [f"export {k}={shlex.quote(v)}" for k, v in variables.items()]


def load_hint(shell: str, command: str = "livekart-users local env") -> str:
    """How to run `command` so that its output sets the variables in `shell`."""
    if shell == "powershell":
        return f"{command} --shell powershell | Invoke-Expression"
    if shell == "cmd":
        return f"for /f \"delims=\" %i in ('{command} --shell cmd') do @%i"
    if shell == "fish":
        return f"{command} --shell fish | source"
    return f'eval "$({command})"'
