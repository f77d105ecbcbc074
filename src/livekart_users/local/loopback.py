"""Keeping the local stack on this machine: loopback only, no other origins, no telemetry.

The emulators check no signature and accept any credentials, so whoever reaches them owns the
stack's data. Three ways in are closed:
- **Other machines.** cognito-local (`HOST=127.0.0.1`) and our Lambda endpoint bind the
  loopback address. DynamoDB Local has no option for its address and listens on every
  interface, so it is started through `guards/LoopbackDynamoDB.class` (source beside it,
  compiled for Java 17, needing only a Java runtime), which sets the address of its Jetty
  connector before starting it. `listening()` reads the addresses each port really listens on,
  so `local up` can say plainly when one listens beyond loopback, and what to do.
- **Web pages.** A page on another origin can make a browser call 127.0.0.1. Only the exact
  origins in LIVEKART_LOCAL_ALLOWED_ORIGINS (comma-separated; none by default) may: DynamoDB
  Local through its `-cors` allow-list, cognito-local through `guards/origin-guard.cjs`
  (it answers every origin with `*` otherwise), and our endpoint refuses any request that
  carries an `Origin` (cognito-local, its only caller, sends none).
- **DNS rebinding.** A page can also point a name it owns at 127.0.0.1 (`rebind.attacker.
  example`): its requests are then same-origin to the browser and carry no foreign `Origin`
  to refuse. They do carry that name in `Host`, so every listener accepts only loopback `Host`
  values (`refusal`): our endpoint and proxy in Python, cognito-local in the same guard script,
  DynamoDB Local in `guards/HostGuard` (a Jetty handler the launcher puts before its own).
- **Telemetry.** DynamoDB Local sends telemetry unless started with `-disableTelemetry` (and the
  launcher skips its telemetry set-up altogether). cognito-local and our endpoint send none.
"""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path

import psutil

from livekart_users.exceptions import LocalStackError

HOST = "127.0.0.1"
GUARDS = Path(__file__).resolve().parent / "guards"
DYNAMODB_LAUNCHER = "LoopbackDynamoDB"
ORIGIN_GUARD = GUARDS / "origin-guard.cjs"
ALLOWED_ORIGINS = "LIVEKART_LOCAL_ALLOWED_ORIGINS"


def allowed_origins() -> list[str]:
    """The web origins allowed to call the emulators, from LIVEKART_LOCAL_ALLOWED_ORIGINS."""
    text = os.environ.get(ALLOWED_ORIGINS, "")
    origins = [origin.strip() for origin in text.split(",") if origin.strip()]
    for origin in origins:
        parts = urllib.parse.urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path:
            raise LocalStackError(
                f"{ALLOWED_ORIGINS}: {origin!r} is not a web origin: give exact origins "
                "such as http://localhost:3000, separated by commas"
            )
    return origins


# The names a client on this machine uses for the stack (what boto3, the AWS SDK for
# JavaScript and browsers send in Host when given a loopback URL), with or without a port.
_LOOPBACK_HOST = re.compile(r"(?:127\.0\.0\.1|localhost|\[::1\])(?::[0-9]{1,5})?", re.ASCII)


def loopback_host(host: str | None) -> bool:
    """`host` (a Host header) names this machine: 127.0.0.1, localhost or [::1] (any case)."""
    return host is not None and _LOOPBACK_HOST.fullmatch(host.lower()) is not None


def refusal(host: str | None, origin: str | None, allowed: Iterable[str] = ()) -> str | None:
    """Why a request with these headers is refused (one line), or None to serve it.

    Refused: a `Host` that is not a loopback name (a DNS-rebinding page sends its own name),
    and an `Origin` that is not one of `allowed` (a web page on another origin).
    """
    if not loopback_host(host):
        return (
            f"Host {host!r} is not this machine: the local stack answers 127.0.0.1, "
            "localhost and [::1] only"
        )
    if origin is not None and origin not in set(allowed):
        return f"origin {origin} is not allowed: set {ALLOWED_ORIGINS}"
    return None


# The largest request body a listener reads: Lambda's limit for a synchronous invocation's
# payload (6 MB); Cognito's requests are far smaller.
MAX_BODY = 6 * 1024 * 1024
# How long a listener waits on a silent client before it frees the thread serving it.
READ_TIMEOUT = 30.0


def body_length(header: str | None) -> int | None:
    """The body length a `Content-Length` header gives, or None when it is not one we read:
    negative, not a number, or beyond MAX_BODY (`int()` would take "-1", " 1", "1_0")."""
    if header is None:
        return 0
    text = header.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_BODY:
        return None
    return int(text)


def dynamodb_command(java: str, jar: Path) -> list[str]:
    """The command (run in the jar's folder) that starts DynamoDB Local on loopback only."""
    return [
        java,
        f"-Dlivekart.host={HOST}",
        # HostGuard serves only loopback Host values and these origins (DNS rebinding).
        f"-Dlivekart.origins={','.join(allowed_origins())}",
        "-Djava.library.path=./DynamoDBLocal_lib",
        # The jar's manifest brings its libraries onto the class path, as with `-jar`.
        "-cp",
        f"{GUARDS}{os.pathsep}{jar.name}",
        DYNAMODB_LAUNCHER,
        "-disableTelemetry",
        "-cors",
        ",".join(allowed_origins()),  # empty: no origin gets CORS headers
    ]


def cognito_local_command(node: str, script: Path) -> list[str]:
    """The command that starts cognito-local with its CORS answers restricted."""
    return [node, "--require", str(ORIGIN_GUARD), str(script)]


def is_loopback(address: str) -> bool:
    """`address` is on the loopback interface (an IPv4-mapped IPv6 address counts as IPv4)."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def listening(endpoints: Mapping[str, str]) -> dict[str, list[str]]:
    """For each service's endpoint URL, the addresses a TCP socket listens on at its port."""
    ports = {
        service: port
        for service, url in endpoints.items()
        if (port := urllib.parse.urlsplit(url).port) is not None
    }
    found: dict[str, list[str]] = {service: [] for service in ports}
    for ip, port in _tcp_listeners():
        for service, wanted in ports.items():
            if port == wanted and ip not in found[service]:
                found[service].append(ip)
    return found


def exposed(listening: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """The services that listen beyond loopback, with those addresses."""
    wide = {s: [a for a in addresses if not is_loopback(a)] for s, addresses in listening.items()}
    return {service: addresses for service, addresses in wide.items() if addresses}


def _tcp_listeners() -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket this user can see."""
    try:
        return [
            (c.laddr.ip, c.laddr.port)
            for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr
        ]
    except psutil.AccessDenied:
        pass
    # macOS lists every process's sockets to root only; our own processes' are readable.
    found = []
    for process in psutil.process_iter():
        try:
            connections = process.net_connections(kind="tcp")
        except psutil.Error:
            continue
        found += [
            (c.laddr.ip, c.laddr.port)
            for c in connections
            if c.status == psutil.CONN_LISTEN and c.laddr
        ]
    return found
