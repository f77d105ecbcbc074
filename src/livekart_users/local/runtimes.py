"""The external runtimes the local stack needs: Node.js >= 18 with npm, and Java >= 17.

They are not Python packages, so pip cannot bring them; what is missing or too old is said in
one line, with the version found, before anything starts or is written.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from livekart_users.exceptions import LocalStackError


@dataclass(frozen=True)
class Runtime:
    name: str
    command: str
    version_args: tuple[str, ...]
    minimum: int
    why: str
    install: str

    def major(self, text: str) -> int | None:
        """The major version in what `version_args` printed."""
        if self.command == "java":
            # `java -version`: 'openjdk version "17.0.15"', or '"1.8.0_392"' for Java 8.
            match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
            if not match:
                return None
            major = int(match.group(1))
            return int(match.group(2)) if major == 1 and match.group(2) else major
        match = re.search(r"v?(\d+)\.\d+", text)
        return int(match.group(1)) if match else None


NODE = Runtime(
    "Node.js", "node", ("--version",), 18, "cognito-local", "install it from https://nodejs.org"
)
# Lockfile version 3 (our package-lock.json) needs npm 7; Node 18 ships npm 8 or later.
NPM = Runtime("npm", "npm", ("--version",), 7, "installing the emulators", "it comes with Node.js")
JAVA = Runtime(
    "Java",
    "java",
    ("-version",),
    17,
    "DynamoDB Local",
    "install a JDK or JRE 17+ (e.g. Eclipse Temurin, or `apt-get install openjdk-17-jre-headless`)",
)


def find(runtime: Runtime) -> tuple[str | None, str | None]:
    """(path, problem): the executable, or why it cannot be used (absent, too old, broken)."""
    path = shutil.which(runtime.command)
    if path is None:
        return None, f"{runtime.name} {runtime.minimum}+ (for {runtime.why}) was not found on PATH"
    try:
        done = subprocess.run(
            [path, *runtime.version_args], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"{runtime.name} at {path} does not run ({exc})"
    text = (done.stdout or "") + (done.stderr or "")  # java prints its version on stderr
    major = runtime.major(text)
    if major is None:
        first = (text.strip().splitlines() or ["no output"])[0]
        return None, f"{runtime.name} at {path} did not say its version ({first!r})"
    if major < runtime.minimum:
        found = text.strip().splitlines()[0]
        return None, (
            f"{runtime.name} {runtime.minimum}+ (for {runtime.why}) is needed; {path} is {found!r}"
        )
    return path, None


def require(*runtimes: Runtime) -> dict[str, str]:
    """The executables, by command; or one LocalStackError naming everything that is missing."""
    found: dict[str, str] = {}
    problems: list[str] = []
    installs: list[str] = []
    for runtime in runtimes:
        path, problem = find(runtime)
        if path is None:
            problems.append(str(problem))
            installs.append(f"{runtime.name}: {runtime.install}")
        else:
            found[runtime.command] = path
    if problems:
        raise LocalStackError("; ".join(problems) + " — " + "; ".join(installs))
    return found
