"""`logs`: the trigger's invocations from its log group (moto, Stubber) and the local stack.

The trigger's lines are the real handler's output (run on DynamoDB Local); Lambda's own
START / END / REPORT lines are written as Lambda writes them (text log format, see the
Lambda developer guide, "Using CloudWatch Logs with Lambda").
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from click.testing import CliRunner
from moto import mock_aws

from livekart_users import logs, triggers
from livekart_users.cli import main
from livekart_users.local.endpoint import FakeContext
from livekart_users.table import UsersTable

from .conftest import TriggerOutput, load_event

REGION = "us-east-1"
FUNCTION = "livekart-post-confirmation-trigger"
GROUP = f"/aws/lambda/{FUNCTION}"
PERSONAL = ("@example.com", "Test User", "+1555")


@pytest.fixture
def cloudwatch(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for variable in [v for v in os.environ if v.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(variable)
    monkeypatch.delenv("LIVEKART_FUNCTION", raising=False)
    with mock_aws():
        client = boto3.client("logs", region_name=REGION)
        client.create_log_group(logGroupName=GROUP)
        yield client


class Lambda:
    """Writes what Lambda writes for one invocation into a log stream."""

    def __init__(self, client: Any, stream: str = "2026/01/01/[$LATEST]abc") -> None:
        self.client = client
        self.stream = stream
        client.create_log_stream(logGroupName=GROUP, logStreamName=stream)

    def invoke(
        self,
        lines: list[str],
        request_id: str,
        *,
        at_ms: int | None = None,
        duration: float = 20.5,
        init: float | None = None,
        status: str | None = None,
    ) -> None:
        report = (
            f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms\tBilled Duration: "
            f"{int(duration) + 1} ms\tMemory Size: 256 MB\tMax Memory Used: 81 MB\t"
        )
        if init is not None:
            report += f"Init Duration: {init:.2f} ms\t"
        if status:
            report += f"Status: {status}\t"
        messages = [
            f"START RequestId: {request_id} Version: $LATEST",
            *lines,
            f"END RequestId: {request_id}",
            report,
        ]
        start = at_ms if at_ms is not None else int(time.time() * 1000) - 5_000
        self.client.put_log_events(
            logGroupName=GROUP,
            logStreamName=self.stream,
            logEvents=[{"timestamp": start + i, "message": m} for i, m in enumerate(messages)],
        )


def trigger_lines(
    output: TriggerOutput, event_name: str, request_id: str, **attributes: str
) -> list[str]:
    """What the real handler prints for this event: its log line and its metric line."""
    output.text()
    triggers.handler(load_event(event_name, **attributes), FakeContext(FUNCTION, 4.0))
    text = output.text()
    lines = [line for line in text.splitlines() if line.strip()]
    return [line.replace(json.loads(lines[0])["request_id"], request_id) for line in lines]


def a_request() -> str:
    return str(uuid.uuid4())


def run(*args: str, columns: int = 200) -> Any:
    """`logs` with output as wide as a wide terminal's (the table then fits)."""
    return CliRunner().invoke(
        main, ["logs", "--function-name", FUNCTION, *args], env={"COLUMNS": str(columns)}
    )


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


# --- on moto ---------------------------------------------------------------------------------


@pytest.fixture
def three_invocations(
    cloudwatch: Any, users_table: UsersTable, trigger_output: TriggerOutput
) -> dict[str, Any]:
    """A cold sign-up, a warm sign-in and a replayed sign-up, in two containers' streams, all
    written by the real handler."""
    sub = str(uuid.uuid4())
    first, second, third = a_request(), a_request(), a_request()
    now = int(time.time() * 1000)
    container_a, container_b = Lambda(cloudwatch, "a"), Lambda(cloudwatch, "b")
    personal = {"sub": sub, "email": "someone@example.com", "name": "Test User"}
    sign_up = trigger_lines(trigger_output, "post-confirmation-signup-customer", first, **personal)
    sign_in = trigger_lines(trigger_output, "post-authentication", second, **personal)
    replay = trigger_lines(trigger_output, "post-confirmation-signup-customer", third, **personal)
    # Stream b holds the newest invocation but is written first: the order is by time.
    container_b.invoke(replay, third, at_ms=now - 10_000, duration=8.25)
    container_a.invoke(sign_up, first, at_ms=now - 30_000, duration=512.75, init=301.25)
    container_a.invoke(sign_in, second, at_ms=now - 20_000, duration=30.5)
    # What the handler itself logged (on a loaded machine a write may time out: `logs` must
    # show that as faithfully as a success).
    logged = [json.loads(lines[0])["outcome"] for lines in (sign_up, sign_in, replay)]
    return {"sub": sub, "first": first, "second": second, "third": third, "logged": logged}


def test_logs_at_80_columns_are_whole_lines_that_fit(
    three_invocations: dict[str, Any],
) -> None:
    outcome = run(columns=80)
    assert outcome.exit_code == 0, outcome.output
    lines = outcome.output.splitlines()
    starts = [i for i, line in enumerate(lines) if "Post" in line]
    assert len(starts) == 3
    # Each invocation: when, outcome and source; then its user id, whole, on the next line.
    assert all(
        lines[i + 1] == f"    user id: {three_invocations['sub']} · error code: -" for i in starts
    )
    assert all(len(line) <= 80 for line in lines)
    assert "…" not in outcome.output  # a squeezed table would cut the ids short


def test_logs_shows_each_invocation_with_its_outcome_and_lambdas_durations(
    three_invocations: dict[str, Any],
) -> None:
    outcome = run()
    assert outcome.exit_code == 0, outcome.output
    rows = [line for line in outcome.output.splitlines() if "Post" in line]
    # Normally created, refreshed, already_exists.
    assert [r.split("│")[3].strip() for r in rows] == three_invocations["logged"]
    assert "PostConfirmation_ConfirmSignUp" in rows[0]
    assert three_invocations["sub"] in rows[0]
    assert "512.8 ms" in rows[0] and "301.2 ms" in rows[0]  # Lambda's duration; a cold start
    assert "30.5 ms" in rows[1] and rows[1].rstrip("│ ").endswith("-")  # warm: no init
    assert "3 invocations since" in outcome.output
    for raw in ("START RequestId", "REPORT RequestId", "END RequestId", "_aws"):
        assert raw not in outcome.output


def test_json_lines_carry_the_invocations_newest_last_and_nothing_else(
    three_invocations: dict[str, Any],
) -> None:
    outcome = run("--json")
    assert outcome.exit_code == 0, outcome.output
    lines = json_lines(outcome.output)
    assert [line["request_id"] for line in lines] == [
        three_invocations["first"],
        three_invocations["second"],
        three_invocations["third"],
    ]
    first = lines[0]
    assert set(first) == {
        "time",
        "request_id",
        "trigger_source",
        "outcome",
        "user_id",
        "error_code",
        "duration_ms",
        "init_duration_ms",
    }
    assert [line["outcome"] for line in lines] == three_invocations["logged"]
    assert first["user_id"] == three_invocations["sub"]
    assert first["duration_ms"] == 512.75
    assert first["init_duration_ms"] == 301.25
    assert lines[1]["init_duration_ms"] is None
    assert lines[0]["time"] < lines[1]["time"] < lines[2]["time"]


def test_personal_data_is_never_shown(
    cloudwatch: Any, users_table: UsersTable, trigger_output: TriggerOutput
) -> None:
    """Even a line that carried personal data (an older or a foreign logger) shows none."""
    request = a_request()
    leaky = {
        "message": "user record created",
        "trigger_source": "PostConfirmation_ConfirmSignUp",
        "outcome": "created",
        "request_id": request,
        "user_id": "sub-1",
        "email": "someone@example.com",
        "name": "Test User",
        "phone_number": "+15550100",
    }
    Lambda(cloudwatch).invoke([json.dumps(leaky)], request)
    for args in ((), ("--json",)):
        outcome = run(*args)
        assert "sub-1" in outcome.output
        for value in ("someone@example.com", "Test User", "+15550100"):
            assert value not in outcome.output


def test_filters_by_outcome_user_and_time(cloudwatch: Any) -> None:
    container = Lambda(cloudwatch)
    now = int(time.time() * 1000)

    def line(outcome: str, user: str, **more: Any) -> str:
        return json.dumps(
            {
                "trigger_source": "PostAuthentication_Authentication",
                "outcome": outcome,
                "user_id": user,
                "request_id": more.pop("request_id"),
                **more,
            }
        )

    requests = [a_request() for _ in range(5)]
    container.invoke(
        [line("created", "u1", request_id=requests[0])], requests[0], at_ms=now - 3 * 3600_000
    )
    container.invoke(
        [
            line(
                "failed",
                "u1",
                request_id=requests[1],
                error_code="ProvisionedThroughputExceededException",
            )
        ],
        requests[1],
        at_ms=now - 50 * 60_000,
    )
    container.invoke(
        [line("refreshed", "u2", request_id=requests[2])], requests[2], at_ms=now - 40 * 60_000
    )
    # An outcome the trigger may add later (a write whose answer never came) is accepted as is.
    container.invoke(
        [line("unknown", "u2", request_id=requests[3])], requests[3], at_ms=now - 5 * 60_000
    )
    container.invoke(
        [line("failed", "u3", request_id=requests[4], error_code="DeadlineExceeded")],
        requests[4],
        at_ms=now - 60_000,
    )

    def ids(*args: str) -> list[str]:
        outcome = run("--json", *args)
        assert outcome.exit_code == 0, outcome.output
        return [line["request_id"] for line in json_lines(outcome.output)]

    assert ids() == requests[1:]  # the default window is one hour
    assert ids("--since", "4h") == requests
    assert ids("--since", "15m") == requests[3:]
    assert ids("--outcome", "failed") == [requests[1], requests[4]]
    assert ids("--outcome", "failed", "--outcome", "unknown") == [
        requests[1],
        requests[3],
        requests[4],
    ]
    assert ids("--user-id", "u2") == [requests[2], requests[3]]
    assert ids("--user-id", "u1", "--since", "1d") == requests[:2]
    assert ids("--outcome", "failed", "--user-id", "u3") == [requests[4]]
    table = run("--outcome", "failed").output
    assert "ProvisionedThroughputExceededException" in table and "DeadlineExceeded" in table


def test_an_invocation_that_timed_out_before_logging_is_shown(cloudwatch: Any) -> None:
    """No line of ours: Lambda's REPORT says how it ended."""
    container = Lambda(cloudwatch)
    timed_out, crashed = a_request(), a_request()
    container.invoke(
        [f"2026-01-01T00:00:00.000Z {timed_out} Task timed out after 4.00 seconds"],
        timed_out,
        duration=4000.0,
        init=2900.5,
    )
    container.invoke([], crashed, duration=3.0, status="error")
    lines = json_lines(run("--json").output)
    assert [(line["request_id"], line["outcome"]) for line in lines] == [
        (timed_out, "timeout"),
        (crashed, "function_error"),
    ]
    assert lines[0]["init_duration_ms"] == 2900.5
    assert [i["request_id"] for i in json_lines(run("--json", "--outcome", "timeout").output)] == [
        timed_out
    ]


def test_a_missing_log_group_is_one_line(cloudwatch: Any) -> None:
    outcome = CliRunner().invoke(main, ["logs", "--function-name", "never-ran"])
    assert outcome.exit_code == 1
    assert outcome.output.startswith("error: no log group /aws/lambda/never-ran in us-east-1 yet")
    assert "has never run" in outcome.output
    assert "Traceback" not in outcome.output


def test_a_bad_since_is_one_line(cloudwatch: Any) -> None:
    outcome = run("--since", "yesterday")
    assert outcome.exit_code == 1
    assert "--since 'yesterday' is not a duration: use a number and a unit" in outcome.output


@pytest.mark.parametrize("since", ["1000000d", "99999999999999999999w"])
def test_an_absurd_since_reads_everything_kept(cloudwatch: Any, since: str) -> None:
    # CloudWatch Logs keeps events 10 years at most: a longer window reads the same events.
    assert logs.parse_since(since) == logs.MAX_SINCE == timedelta(days=3653)
    outcome = run("--since", since)
    assert outcome.exit_code == 0, outcome.output
    assert "Traceback" not in outcome.output


def test_without_a_target_says_what_is_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER", raising=False)
    monkeypatch.delenv("LIVEKART_FUNCTION", raising=False)
    monkeypatch.delenv("LIVEKART_USER_POOL_ID", raising=False)
    outcome = CliRunner().invoke(main, ["logs"])
    assert outcome.exit_code == 2
    assert "--user-pool-id or --function-name is needed" in outcome.output


# --- exact pages (Stubber): AWS returns short and empty pages while more remain --------------


def stubbed() -> tuple[Any, Stubber]:
    client = boto3.client("logs", region_name=REGION)
    return client, Stubber(client)


def event(request: str, offset: int, message: str) -> dict[str, Any]:
    return {
        "logStreamName": "s",
        "timestamp": int(time.time() * 1000) - 60_000 + offset,
        "message": message,
        "ingestionTime": int(time.time() * 1000),
        "eventId": f"{request}-{offset}",
    }


def invocation_events(request: str, outcome: str = "created") -> list[dict[str, Any]]:
    line = {"trigger_source": "PostConfirmation_ConfirmSignUp", "outcome": outcome}
    return [
        event(request, 0, json.dumps({**line, "request_id": request, "user_id": "u"})),
        event(request, 1, f"REPORT RequestId: {request}\tDuration: 9.00 ms\t"),
    ]


def test_empty_and_short_pages_are_read_until_there_is_no_token() -> None:
    client, stub = stubbed()
    first, second = a_request(), a_request()
    pages = [
        {"events": [], "nextToken": "t1"},
        {"events": invocation_events(first)[:1], "nextToken": "t2"},
        {"events": [], "nextToken": "t3"},
        {"events": [*invocation_events(first)[1:], *invocation_events(second)]},
    ]
    for index, page in enumerate(pages):
        expected: dict[str, Any] = {"logGroupName": GROUP, "startTime": stub_any()}
        if index:
            expected["nextToken"] = f"t{index}"
        stub.add_response("filter_log_events", page, expected)
    with stub:
        window = logs.CloudWatchLogs(client, GROUP, REGION).read(
            timedelta(hours=1), logs.Filters(), limit=None
        )
    stub.assert_no_pending_responses()
    assert [i.request_id for i in window.invocations] == [first, second]
    assert window.invocations[0].duration_ms == 9.0  # its REPORT came two pages later
    assert window.pages == 4
    assert window.cut_short is None


def test_the_limit_stops_reading_and_says_the_window_was_cut_short() -> None:
    client, stub = stubbed()
    requests = [a_request() for _ in range(3)]
    stub.add_response(
        "filter_log_events",
        {
            "events": invocation_events(requests[0]) + invocation_events(requests[1]),
            "nextToken": "more",
        },
    )
    # No second page is stubbed: a further read would fail the test.
    with stub:
        window = logs.CloudWatchLogs(client, GROUP, REGION).read(
            timedelta(hours=1), logs.Filters(), limit=2
        )
    assert [i.request_id for i in window.invocations] == requests[:2]
    assert window.cut_short is not None
    assert window.cut_short.startswith("stopped at --limit 2: invocations after ")


def test_a_refused_read_names_the_action_to_add() -> None:
    client, stub = stubbed()
    stub.add_client_error(
        "filter_log_events",
        "AccessDeniedException",
        "User: arn:aws:iam::123456789012:user/ops is not authorized to perform: "
        "logs:FilterLogEvents on resource: arn:aws:logs:us-east-1:123456789012:log-group:"
        f"{GROUP}:log-stream: because no identity-based policy allows the logs:FilterLogEvents "
        "action",
    )
    with stub, pytest.raises(logs.LogsAccessDenied) as refused:
        logs.CloudWatchLogs(client, GROUP, REGION).read(timedelta(hours=1), logs.Filters(), None)
    assert str(refused.value) == (
        "not allowed to read the function's logs: add logs:FilterLogEvents on "
        f"arn:aws:logs:us-east-1:123456789012:log-group:{GROUP}:* to your policy "
        "(docs/permissions.md, section logs)"
    )


def test_a_refused_read_in_another_partition_names_that_partitions_arn() -> None:
    client = boto3.client("logs", region_name="cn-north-1")
    stub = Stubber(client)
    stub.add_client_error(
        "filter_log_events",
        "AccessDeniedException",
        "User: arn:aws-cn:iam::123456789012:user/ops is not authorized to perform: "
        "logs:FilterLogEvents",
    )
    with stub, pytest.raises(logs.LogsAccessDenied) as refused:
        logs.CloudWatchLogs(client, GROUP, "cn-north-1").read(
            timedelta(hours=1), logs.Filters(), None
        )
    assert f"arn:aws-cn:logs:cn-north-1:123456789012:log-group:{GROUP}:*" in str(refused.value)


def stub_any() -> Any:
    from botocore.stub import ANY

    return ANY


# --- follow ---------------------------------------------------------------------------------


def test_follow_prints_an_invocation_logged_after_it_started_and_stops_on_sigint(
    tmp_path: Path,
) -> None:
    """A real process, a moto server, a real SIGINT."""
    from moto.server import ThreadedMotoServer

    from livekart_users.local.processes import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client("logs", region_name=REGION, endpoint_url=endpoint)
        client.create_log_group(logGroupName=GROUP)
        container = Lambda(client)
        before = a_request()
        container.invoke([_line(before, "created")], before)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")},
            "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": endpoint,
            "PYTHONUNBUFFERED": "1",
        }
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("livekart-users")),
                "logs",
                "--function-name",
                FUNCTION,
                "--follow",
                "--interval",
                "1",
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        out: queue.Queue[str] = queue.Queue()
        err: queue.Queue[str] = queue.Queue()
        for stream, sink in ((process.stdout, out), (process.stderr, err)):
            threading.Thread(
                target=lambda s=stream, q=sink: [q.put(x) for x in s], daemon=True
            ).start()
        try:
            assert json.loads(out.get(timeout=30))["request_id"] == before
            assert "following" in err.get(timeout=30)
            after = a_request()
            container.invoke([_line(after, "failed")], after, at_ms=int(time.time() * 1000))
            arrived = json.loads(out.get(timeout=30))
            assert (arrived["request_id"], arrived["outcome"]) == (after, "failed")
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
        time.sleep(0.2)
        rest = "".join(iter_queue(err))
        assert "stopped" in rest
        assert "Traceback" not in rest
        assert out.empty()
    finally:
        server.stop()


def iter_queue(q: queue.Queue[str]) -> Iterator[str]:
    while not q.empty():
        yield q.get()


def _line(request: str, outcome: str) -> str:
    return json.dumps(
        {
            "trigger_source": "PostAuthentication_Authentication",
            "outcome": outcome,
            "request_id": request,
            "user_id": "u",
        }
    )


def test_polling_waits_for_a_late_report_then_shows_the_line_without_it() -> None:
    """A line whose REPORT is not in the same poll is held, then shown with it or without."""
    client, stub = stubbed()
    waiting, lost = a_request(), a_request()
    both_lines = [invocation_events(waiting)[0], invocation_events(lost)[0]]
    stub.add_response("filter_log_events", {"events": both_lines})
    stub.add_response("filter_log_events", {"events": [*both_lines, invocation_events(waiting)[1]]})
    stub.add_response("filter_log_events", {"events": []})
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += logs.REPORT_GRACE_SECONDS  # each pause outlasts the grace period

    source = logs.CloudWatchLogs(client, GROUP, REGION, sleep=sleep, monotonic=lambda: clock[0])
    shown: list[logs.Invocation] = []
    with stub:
        for invocation in source.follow(logs.Filters(), 1.0, after_read=False):
            shown.append(invocation)
            if len(shown) == 2:
                break
    assert [(i.request_id, i.duration_ms) for i in shown] == [(waiting, 9.0), (lost, None)]


# --- the local stack ----------------------------------------------------------------------------


def test_following_the_local_record_prints_lines_as_they_are_written(tmp_path: Path) -> None:
    record = tmp_path / "invocations.jsonl"
    entry = {
        "time": "2026-01-01T00:00:00+00:00",
        "function": FUNCTION,
        "request_id": "r1",
        "trigger_source": "PostConfirmation_ConfirmSignUp",
        "user_id": "u1",
        "duration_ms": 12.5,
        "function_error": None,
        "error_type": None,
        "outcome": "created",
        "error_code": None,
    }
    record.write_text(json.dumps(entry) + "\n")
    written = [
        {**entry, "request_id": "r2", "outcome": "failed", "error_code": "DeadlineExceeded"},
        {
            **entry,
            "request_id": "r3",
            "outcome": None,
            "function_error": "Unhandled",
            "error_type": "Sandbox.Timedout",
        },
    ]

    lines = "".join(json.dumps(w) + "\n" for w in written)
    # The endpoint writes while logs waits: half a line first, then the rest.
    chunks = [lines[:10], lines[10:]]

    def sleep(_: float) -> None:
        if chunks:
            with record.open("a") as out:
                out.write(chunks.pop(0))

    source = logs.LocalRecord(record, clock=lambda: 1767225600.0 + 60, sleep=sleep)
    window = source.read(timedelta(hours=1), logs.Filters(), None)
    assert [i.request_id for i in window.invocations] == ["r1"]
    followed = source.follow(logs.Filters())
    shown = [next(followed), next(followed)]
    assert [(i.request_id, i.outcome, i.error_code) for i in shown] == [
        ("r2", "failed", "DeadlineExceeded"),
        ("r3", "timeout", None),
    ]


# --- Live Tail (--follow --live-tail) ---------------------------------------------------------


def test_live_tail_shows_each_new_invocation_once(cloudwatch: Any) -> None:
    """moto answers a session with every event so far, then ends it: what was shown is
    recognised, and a new session follows."""
    container = Lambda(cloudwatch)
    before, after = a_request(), a_request()
    container.invoke([_line(before, "created")], before)
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 1:
            container.invoke([_line(after, "refreshed")], after, at_ms=int(time.time() * 1000))

    source = logs.CloudWatchLogs(cloudwatch, GROUP, REGION, sleep=sleep)
    window = source.read(timedelta(hours=1), logs.Filters(), None)
    assert [i.request_id for i in window.invocations] == [before]
    arn = f"arn:aws:logs:{REGION}:123456789012:log-group:{GROUP}"
    followed = source.follow(logs.Filters(), 2.0, live_tail_arn=arn)
    arrived = next(followed)
    assert (arrived.request_id, arrived.outcome, arrived.duration_ms) == (after, "refreshed", 20.5)
    assert pauses == [2.0]  # one pause between the two sessions, none busy


def test_refused_live_tail_falls_back_to_polling_and_says_so() -> None:
    client, stub = stubbed()
    arn = f"arn:aws:logs:{REGION}:123456789012:log-group:{GROUP}"
    stub.add_client_error("start_live_tail", "AccessDeniedException", "not authorized")
    request = a_request()
    stub.add_response("filter_log_events", {"events": invocation_events(request)})
    notes: list[str] = []
    with stub:
        source = logs.CloudWatchLogs(client, GROUP, REGION)
        followed = source.follow(
            logs.Filters(), 5.0, after_read=False, live_tail_arn=arn, note=notes.append
        )
        assert next(followed).request_id == request
    assert notes == [
        f"Live Tail was refused (AccessDeniedException; it needs logs:StartLiveTail on {arn}): "
        "polling FilterLogEvents every 5 s instead"
    ]


def test_a_function_logging_in_json_format_is_folded_the_same_way() -> None:
    """With LoggingConfig LogFormat JSON, Lambda's own lines are `platform.*` objects."""
    request, earlier = a_request(), a_request()
    platform = [
        {"type": "platform.start", "record": {"requestId": request, "version": "$LATEST"}},
        {
            "type": "platform.report",
            "record": {
                "requestId": request,
                "status": "success",
                "metrics": {"durationMs": 42.5, "initDurationMs": 250.0},
            },
        },
        # The REPORT of an invocation whose own line was before the window: nothing to show.
        {"type": "platform.report", "record": {"requestId": earlier, "metrics": {}}},
    ]
    events = [
        event(request, 0, json.dumps(platform[0])),
        event(request, 1, _line(request, "refreshed")),
        event(request, 2, json.dumps(platform[1])),
        event(earlier, 3, json.dumps(platform[2])),
    ]
    assembler = logs.Assembler()
    [done] = assembler.feed(events)
    assert (done.request_id, done.outcome) == (request, "refreshed")
    assert (done.duration_ms, done.init_duration_ms) == (42.5, 250.0)
    assert assembler.flush() == []


def test_live_tail_without_follow_is_a_usage_error(cloudwatch: Any) -> None:
    outcome = run("--live-tail")
    assert outcome.exit_code == 2
    assert "--live-tail goes with --follow" in outcome.output
