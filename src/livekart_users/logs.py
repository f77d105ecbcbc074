"""What the trigger did: its invocations, read from CloudWatch Logs or the local stack's record.

The trigger logs one JSON line per invocation (`trigger_source`, `outcome`, `user_id`,
`error_code`, `duration_ms`, `request_id`); Lambda adds its own START / END / REPORT lines.
Stages: a source reads raw lines (`CloudWatchLogs`: `FilterLogEvents`; `LocalRecord`: the
`invocations.jsonl` the local Invoke endpoint writes) → `Assembler` folds each REPORT into the
structured line of the same request id (Lambda's duration, and `Init Duration` on a cold
start) → `Filters` keep what was asked for → `Window` (a read of `--since`) or an iterator of
invocations (`follow`). Nothing here prints.

Only the fields of `Invocation` ever leave this module, whatever else a line carries, so no
personal data can be shown even if a future log line held some.

Following polls `FilterLogEvents` (every 5 s by default): it costs nothing beyond the read,
needs no other permission, and works against every endpoint. Its quota is 5 requests/s per
account and region, shared and not adjustable; one request per poll is under 5 % of it. Events
can be ingested late, so each poll re-reads the last minute and skips what it has shown. Live
Tail (`StartLiveTail`) is the opt-in alternative: events within seconds, but billed per minute
of session, a permission of its own, sessions of at most 3 hours, sampled above 500 events/s;
when it is refused or unknown to the endpoint, following falls back to polling.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from livekart_users import aws
from livekart_users.exceptions import LivekartUsersError

DEFAULT_SINCE = "1h"
DEFAULT_LIMIT = 200
POLL_SECONDS = 5.0
# Events reach FilterLogEvents some seconds after they happen: each poll looks back this far.
OVERLAP_MS = 60_000
# A structured line waits this long for its REPORT before it is shown without it.
REPORT_GRACE_SECONDS = 15.0
# Outcomes for invocations that ended without our line: Lambda's own report of them.
TIMEOUT = "timeout"
FUNCTION_ERROR = "function_error"
KNOWN_OUTCOMES = ("created", "already_exists", "refreshed", "failed", "unknown", "ignored")

_SINCE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
# CloudWatch Logs keeps events at most 3,653 days (its longest retention): a longer --since
# reads the same events, so it is capped there (also keeping datetime arithmetic in range).
MAX_SINCE = timedelta(days=3653)
_TIMED_OUT = re.compile(r"([0-9a-fA-F-]{8,}) Task timed out after")
_ACCOUNT = re.compile(r"arn:aws[\w-]*:(?:iam|sts|logs)::?(?:[\w-]*:)?(\d{12})")


class LogsError(LivekartUsersError):
    """The function's logs could not be read."""


class InvalidSince(LogsError):
    def __init__(self, text: str) -> None:
        super().__init__(
            f"--since {text!r} is not a duration: use a number and a unit, e.g. 15m, 2h, 1d"
        )


class LogGroupNotFound(LogsError):
    def __init__(self, log_group: str, region: str) -> None:
        super().__init__(
            f"no log group {log_group} in {region} yet: the function has never run (Lambda "
            "creates it at the first invocation), or it has another name or region "
            "(--function-name, --region)"
        )


class LiveTailUnavailable(LogsError):
    """Live Tail cannot be used here (refused, or unknown to the endpoint or the SDK)."""


class LogsAccessDenied(LogsError):
    def __init__(self, action: str, resource: str) -> None:
        super().__init__(
            f"not allowed to read the function's logs: add {action} on {resource} to your "
            "policy (docs/permissions.md, section logs)"
        )


def parse_since(text: str) -> timedelta:
    """`15m`, `2h`, `1d` (also `s` and `w`) as a duration, at most `MAX_SINCE`."""
    match = _SINCE.match(text)
    if not match or int(match.group(1)) == 0:
        raise InvalidSince(text)
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return timedelta(seconds=min(seconds, MAX_SINCE // timedelta(seconds=1)))


@dataclass(frozen=True)
class Invocation:
    """One invocation of the trigger, as far as its logs tell. No personal data: the user is
    named by id (the Cognito sub) only."""

    time: datetime
    request_id: str | None = None
    trigger_source: str | None = None
    outcome: str | None = None
    user_id: str | None = None
    error_code: str | None = None
    # Lambda's own duration when its REPORT was read, else the handler's.
    duration_ms: float | None = None
    # Set on a cold start only (Lambda's `Init Duration`).
    init_duration_ms: float | None = None

    def as_dict(self) -> dict[str, Any]:
        fields = asdict(self)
        fields["time"] = self.time.astimezone(UTC).isoformat(timespec="milliseconds")
        fields["time"] = fields["time"].replace("+00:00", "Z")
        return fields


@dataclass(frozen=True)
class Filters:
    """What to show: any of these outcomes (all when empty), this user only (all when None)."""

    outcomes: frozenset[str] = frozenset()
    user_id: str | None = None

    def keep(self, invocation: Invocation) -> bool:
        if self.outcomes and invocation.outcome not in self.outcomes:
            return False
        return self.user_id is None or invocation.user_id == self.user_id


@dataclass
class Window:
    """What one read of a time window found, oldest first."""

    source: str
    since: datetime
    invocations: list[Invocation]
    # Why the window was not read to its end (None when it was).
    cut_short: str | None = None
    pages: int = 0


# --- folding Lambda's lines into invocations ---------------------------------------------


@dataclass
class _Pending:
    first_seen: float
    at: datetime
    line: Invocation | None = None
    report: dict[str, Any] | None = None
    timed_out: bool = False


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    match = re.match(r"\s*([\d.]+)", text)
    return float(match.group(1)) if match else None


def _text_report(message: str) -> dict[str, Any] | None:
    """`REPORT RequestId: …\\tDuration: 12.3 ms\\t…\\tInit Duration: 301.2 ms` as fields."""
    if not message.startswith("REPORT RequestId:"):
        return None
    parts = dict(
        (key.strip(), value.strip())
        for key, _, value in (p.partition(":") for p in message.split("\t"))
        if value
    )
    status = (parts.get("Status") or "").lower()
    return {
        "request_id": parts.get("REPORT RequestId"),
        "duration_ms": _number(parts.get("Duration")),
        "init_duration_ms": _number(parts.get("Init Duration")),
        "status": status or None,
    }


def _json_report(line: Mapping[str, Any]) -> dict[str, Any] | None:
    """The same from a function whose log format is JSON (`platform.report`)."""
    if line.get("type") != "platform.report" or not isinstance(line.get("record"), dict):
        return None
    record = line["record"]
    metrics = record.get("metrics") if isinstance(record.get("metrics"), dict) else {}
    status = record.get("status")
    return {
        "request_id": record.get("requestId"),
        "duration_ms": metrics.get("durationMs"),
        "init_duration_ms": metrics.get("initDurationMs"),
        "status": None if status in (None, "success") else str(status).lower(),
    }


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _structured(line: Mapping[str, Any], at: datetime) -> Invocation | None:
    """The trigger's own line, reduced to the fields that may be shown."""
    if "outcome" not in line or "trigger_source" not in line:
        return None
    return Invocation(
        time=at,
        request_id=_text(line.get("request_id")),
        trigger_source=_text(line.get("trigger_source")),
        outcome=_text(line.get("outcome")),
        user_id=_text(line.get("user_id")),
        error_code=_text(line.get("error_code")),
        duration_ms=_float(line.get("duration_ms")),
    )


def _event_key(event: Mapping[str, Any]) -> tuple[str, int, str]:
    """Who an event is, the same for FilterLogEvents and Live Tail (which has no event id)."""
    return (
        str(event.get("logStreamName") or ""),
        int(event.get("timestamp") or 0),
        str(event.get("message") or ""),
    )


def _at(timestamp_ms: Any) -> datetime:
    return datetime.fromtimestamp(float(timestamp_ms) / 1000, UTC)


class Assembler:
    """Turns log events into invocations. Within a log stream Lambda writes the handler's line
    before the REPORT of the same request id, so a REPORT completes its invocation; a line
    whose REPORT never comes is shown without it (`expire`, `flush`). START and END lines,
    metric lines and anything else are dropped."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._pending: dict[str, _Pending] = {}

    def feed(self, events: Iterable[Mapping[str, Any]]) -> list[Invocation]:
        """The invocations these events complete, in the order they completed."""
        done: list[Invocation] = []
        for event in events:
            message = str(event.get("message") or "").strip()
            at = _at(event.get("timestamp") or 0)
            report = _text_report(message)
            line: Invocation | None = None
            if report is None and message.startswith("{"):
                try:
                    parsed = json.loads(message)
                except ValueError:
                    parsed = None
                if isinstance(parsed, dict):
                    report = _json_report(parsed)
                    line = None if report else _structured(parsed, at)
            if report is not None and report.get("request_id"):
                request_id = str(report["request_id"])
                self._part(request_id, at).report = report
                finished = _merge(request_id, self._pending.pop(request_id))
                done += [finished] if finished else []
            elif line is not None and line.request_id is None:
                done.append(line)  # nothing to wait for
            elif line is not None:
                pending = self._part(str(line.request_id), at)
                # A second line of the same invocation (a configuration warning) adds nothing.
                pending.line = pending.line or line
            elif (match := _TIMED_OUT.search(message)) is not None:
                self._part(match.group(1), at).timed_out = True
        return done

    def expire(self, grace: float = REPORT_GRACE_SECONDS) -> list[Invocation]:
        """Invocations that waited `grace` seconds for their REPORT, shown without it."""
        return self._take(self._clock() - grace)

    def flush(self) -> list[Invocation]:
        """Everything still waiting (the end of a read)."""
        return self._take(None)

    def _part(self, request_id: str, at: datetime) -> _Pending:
        pending = self._pending.get(request_id)
        if pending is None:
            pending = self._pending[request_id] = _Pending(first_seen=self._clock(), at=at)
        return pending

    def _take(self, seen_before: float | None) -> list[Invocation]:
        taken: list[Invocation] = []
        for request_id, pending in list(self._pending.items()):
            if seen_before is not None and pending.first_seen > seen_before:
                continue
            del self._pending[request_id]
            invocation = _merge(request_id, pending)
            if invocation is not None:
                taken.append(invocation)
        taken.sort(key=lambda i: i.time)
        return taken


def _merge(request_id: str, pending: _Pending) -> Invocation | None:
    report = pending.report or {}
    status = report.get("status")
    line = pending.line
    if line is None:
        # No line of ours: shown only when Lambda says the invocation failed (a timeout or a
        # crash before the handler could log); a lone REPORT is one whose line fell outside
        # the window.
        if not (pending.timed_out or status):
            return None
        return Invocation(
            time=pending.at,
            request_id=request_id,
            outcome=TIMEOUT if pending.timed_out or status == "timeout" else FUNCTION_ERROR,
            duration_ms=_float(report.get("duration_ms")),
            init_duration_ms=_float(report.get("init_duration_ms")),
        )
    return Invocation(
        time=line.time,
        request_id=line.request_id,
        trigger_source=line.trigger_source,
        outcome=line.outcome,
        user_id=line.user_id,
        error_code=line.error_code,
        duration_ms=_float(report.get("duration_ms")) or line.duration_ms,
        init_duration_ms=_float(report.get("init_duration_ms")),
    )


# --- CloudWatch Logs ----------------------------------------------------------------------


@dataclass
class CloudWatchLogs:
    """The function's log group, read with FilterLogEvents."""

    client: Any
    log_group: str
    region: str
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    # For how long a line has waited for its REPORT.
    monotonic: Callable[[], float] = time.monotonic
    _seen: dict[tuple[str, int, str], int] = field(default_factory=dict)
    _cursor_ms: int = 0

    @property
    def description(self) -> str:
        return f"log group {self.log_group} ({self.region})"

    def read(self, since: timedelta, filters: Filters, limit: int | None) -> Window:
        """The window's invocations, oldest first, reading every page (a page may be short or
        empty while more remain) until there is no nextToken or `limit` were found."""
        started_ms = int(self.clock() * 1000)
        start_ms = started_ms - int(since.total_seconds() * 1000)
        assembler = Assembler(self.monotonic)
        found: list[Invocation] = []
        kwargs: dict[str, Any] = {"logGroupName": self.log_group, "startTime": start_ms}
        pages, more = 0, False
        while True:
            answer = self._call(**kwargs)
            pages += 1
            events = self._unseen(answer.get("events") or [])
            found += [i for i in assembler.feed(events) if filters.keep(i)]
            token = answer.get("nextToken")
            more = bool(token)
            if not token or (limit is not None and len(found) >= limit):
                break
            kwargs["nextToken"] = token
        found += [i for i in assembler.flush() if filters.keep(i)]
        found.sort(key=lambda i: i.time)
        cut_short = None
        if limit is not None and (len(found) > limit or (more and len(found) >= limit)):
            found = found[:limit]
            cut_short = (
                f"stopped at --limit {limit}: invocations after "
                f"{found[-1].time.strftime('%Y-%m-%d %H:%M:%S')}Z were not read (raise --limit "
                "or shorten --since)"
            )
        self._cursor_ms = max(self._cursor_ms, started_ms - OVERLAP_MS)
        return Window(self.description, _at(start_ms), found, cut_short=cut_short, pages=pages)

    def follow(
        self,
        filters: Filters,
        interval: float = POLL_SECONDS,
        *,
        after_read: bool = True,
        live_tail_arn: str | None = None,
        note: Callable[[str], None] = lambda _: None,
    ) -> Iterator[Invocation]:
        """New invocations as they are logged, until the caller stops (Ctrl-C).

        With `live_tail_arn` (the log group's ARN) through a Live Tail session, else, or when
        Live Tail is refused or unknown to the endpoint, by polling FilterLogEvents.
        """
        if not after_read or not self._cursor_ms:
            self._cursor_ms = int(self.clock() * 1000) - OVERLAP_MS
        assembler = Assembler(self.monotonic)
        if live_tail_arn:
            try:
                yield from self._live_tail(live_tail_arn, filters, assembler, interval)
            except LiveTailUnavailable as unavailable:
                note(f"{unavailable}: polling FilterLogEvents every {interval:g} s instead")
        while True:
            kwargs: dict[str, Any] = {
                "logGroupName": self.log_group,
                "startTime": self._cursor_ms,
            }
            polled_ms = int(self.clock() * 1000)
            while True:
                answer = self._call(**kwargs)
                events = self._unseen(answer.get("events") or [])
                yield from (i for i in assembler.feed(events) if filters.keep(i))
                if not answer.get("nextToken"):
                    break
                kwargs["nextToken"] = answer["nextToken"]
            yield from (i for i in assembler.expire() if filters.keep(i))
            self._cursor_ms = max(self._cursor_ms, polled_ms - OVERLAP_MS)
            self._forget_before(self._cursor_ms)
            self.sleep(interval)

    def _live_tail(
        self, arn: str, filters: Filters, assembler: Assembler, interval: float
    ) -> Iterator[Invocation]:
        """Live Tail sessions, one after another (AWS ends each after 3 hours).

        Every second a session sends the events ingested since (up to 500, sampled beyond);
        they carry no event id, so what was already shown is recognised by stream, time and
        text (an emulator may send old events again).
        """
        while True:
            try:
                answer = self.client.start_live_tail(logGroupIdentifiers=[arn])
            except AttributeError as exc:  # a botocore older than Live Tail
                raise LiveTailUnavailable("this botocore has no Live Tail") from exc
            except ClientError as exc:
                code = aws.error_code(exc)
                if "denied" in code.lower() or "unauthorized" in code.lower():
                    raise LiveTailUnavailable(
                        f"Live Tail was refused ({code}; it needs logs:StartLiveTail on {arn})"
                    ) from exc
                if code in ("UnknownOperationException", "InvalidAction", "404"):
                    raise LiveTailUnavailable(f"this endpoint has no Live Tail ({code})") from exc
                raise
            try:
                for message in answer["responseStream"]:
                    update = message.get("sessionUpdate")
                    if update is None:
                        continue
                    events = self._unseen(update.get("sessionResults") or [])
                    yield from (i for i in assembler.feed(events) if filters.keep(i))
                    yield from (i for i in assembler.expire() if filters.keep(i))
                    self._forget_before(int(self.clock() * 1000) - OVERLAP_MS)
            except ClientError as exc:
                if aws.error_code(exc) != "SessionTimeoutException":
                    raise
            self.sleep(interval)  # then a new session: never a busy loop

    def _unseen(self, events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The events not shown yet, remembered from now on."""
        fresh: list[Mapping[str, Any]] = []
        for event in events:
            key = _event_key(event)
            if key not in self._seen:
                self._seen[key] = int(event.get("timestamp") or 0)
                fresh.append(event)
        return fresh

    def _forget_before(self, cursor_ms: int) -> None:
        for key, timestamp in list(self._seen.items()):
            if timestamp < cursor_ms:
                del self._seen[key]

    def _call(self, **kwargs: Any) -> dict[str, Any]:
        try:
            return dict(self.client.filter_log_events(**kwargs))
        except ClientError as exc:
            code = aws.error_code(exc)
            if code == "ResourceNotFoundException":
                raise LogGroupNotFound(self.log_group, self.region) from exc
            if "denied" in code.lower() or "unauthorized" in code.lower():
                raise LogsAccessDenied("logs:FilterLogEvents", self._group_arn(exc)) from exc
            raise

    def _group_arn(self, exc: ClientError) -> str:
        message = str(exc.response.get("Error", {}).get("Message", ""))
        match = _ACCOUNT.search(message)
        account = match.group(1) if match else "ACCOUNT"
        partition = aws.partition_of(self.region)
        return f"arn:{partition}:logs:{self.region}:{account}:log-group:{self.log_group}:*"


# --- the local stack ----------------------------------------------------------------------


def _local_invocation(entry: Mapping[str, Any]) -> Invocation | None:
    """A line of the local Invoke endpoint's record."""
    try:
        at = datetime.fromisoformat(str(entry["time"]))
    except (KeyError, ValueError):
        return None
    outcome = _text(entry.get("outcome"))
    if outcome is None and entry.get("function_error"):
        timed_out = entry.get("error_type") == "Sandbox.Timedout"
        outcome = TIMEOUT if timed_out else FUNCTION_ERROR
    return Invocation(
        time=at if at.tzinfo else at.replace(tzinfo=UTC),
        request_id=_text(entry.get("request_id")),
        trigger_source=_text(entry.get("trigger_source")),
        outcome=outcome,
        user_id=_text(entry.get("user_id")),
        error_code=_text(entry.get("error_code")),
        duration_ms=_float(entry.get("duration_ms")),
        init_duration_ms=_float(entry.get("init_duration_ms")),
    )


@dataclass
class LocalRecord:
    """The local stack's invocation record (`invocations.jsonl`, one line per invocation)."""

    path: Path
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    _offset: int = 0

    @property
    def description(self) -> str:
        return f"the local stack's record {self.path}"

    def read(self, since: timedelta, filters: Filters, limit: int | None) -> Window:
        start = datetime.fromtimestamp(self.clock(), UTC) - since
        found = [i for i in self._new_lines() if i.time >= start and filters.keep(i)]
        found.sort(key=lambda i: i.time)
        cut_short = None
        if limit is not None and len(found) > limit:
            found = found[:limit]
            cut_short = (
                f"stopped at --limit {limit}: invocations after "
                f"{found[-1].time.strftime('%Y-%m-%d %H:%M:%S')}Z not shown (raise --limit or "
                "shorten --since)"
            )
        return Window(self.description, start, found, cut_short=cut_short, pages=1)

    def follow(
        self, filters: Filters, interval: float = 0.5, *, after_read: bool = True
    ) -> Iterator[Invocation]:
        if not after_read:
            self._offset = self.path.stat().st_size if self.path.exists() else 0
        while True:
            yield from (i for i in self._new_lines() if filters.keep(i))
            self.sleep(interval)

    def _new_lines(self) -> list[Invocation]:
        """Complete lines written since the last read (a line being written waits)."""
        try:
            with self.path.open("rb") as record:
                record.seek(self._offset)
                data = record.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        self._offset += end
        found: list[Invocation] = []
        for raw in data[:end].splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            invocation = _local_invocation(entry) if isinstance(entry, dict) else None
            if invocation is not None:
                found.append(invocation)
        return found
