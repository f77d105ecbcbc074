"""The stack's Cognito endpoint against cognito-local itself: per request, and sign-ups/s.

    .venv/bin/python bench/cognito_endpoint.py [--rounds 200] [--sign-ups 60] [--markdown]
    (make bench-endpoint)

Starts one local stack in a temporary folder and measures, with boto3 (one client per side,
kept-alive connections, no retries):
1. per request, medians over `--rounds`, the two sides interleaved call by call:
   a read (`ListUserPools`) and a write (`AdminUpdateUserAttributes` of one user's name,
   which through the endpoint also emits its change event);
2. local sign-ups (SignUp + ConfirmSignUp, so the PostConfirmation trigger runs) per second
   with K = 1, 4 and 16 at once, straight to cognito-local (as the stack was before the
   endpoint) and through the endpoint, in alternating batches. Straight to cognito-local at
   K > 1 may damage its pool file (the reason the endpoint exists): each side has a stack of
   its own, thrown away afterwards.

Target (issue 19): the endpoint's median at most 1.3x cognito-local's, reads and writes, and
sign-ups/s at least cognito-local's straight. Exit status 1 when a target is missed.
Reaches nothing but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from livekart_users.local import processes
from livekart_users.local.stack import CONFIRMATION_CODE, LocalStack, Settings

TARGET_RATIO = 1.3
SIDES = {"cognito-local": "cognito-local", "endpoint": "cognito-idp"}


def client(endpoint: str, workers: int = 4) -> Any:
    return boto3.client(
        "cognito-idp",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(max_pool_connections=workers, retries={"max_attempts": 1}),
    )


def per_request(stack: Any, rounds: int) -> dict[str, dict[str, float]]:
    status = stack.status()
    pool = str(status.user_pool_id)
    clients = {side: client(status.endpoints[key]) for side, key in SIDES.items()}
    name = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    clients["cognito-local"].admin_create_user(
        UserPoolId=pool,
        Username=name,
        MessageAction="SUPPRESS",
        UserAttributes=[{"Name": "email", "Value": name}],
    )
    calls: dict[str, Callable[[Any, int], Any]] = {
        "read": lambda c, _: c.list_user_pools(MaxResults=10),
        "write": lambda c, i: c.admin_update_user_attributes(
            UserPoolId=pool, Username=name, UserAttributes=[{"Name": "name", "Value": f"n{i}"}]
        ),
    }
    times: dict[str, dict[str, list[float]]] = {k: {s: [] for s in SIDES} for k in calls}
    # One kind after the other: a write through the endpoint leaves its change event to be
    # delivered (and the change function to run) just after it answers, which a read
    # interleaved with writes would pay for.
    for kind, call in calls.items():
        for i in range(rounds + 10):
            order = list(SIDES) if i % 2 else list(reversed(SIDES))
            for side in order:
                started = time.perf_counter()
                call(clients[side], i)
                if i >= 10:  # the first rounds warm connections and the JIT of node
                    times[kind][side].append(time.perf_counter() - started)
    return {
        kind: {side: statistics.median(values) * 1000 for side, values in by_side.items()}
        for kind, by_side in times.items()
    }


def sign_ups(stack: Any, side: str, workers: int, count: int) -> float:
    """Seconds for `count` sign-ups (SignUp + ConfirmSignUp), `workers` at once."""
    status = stack.status()
    cognito = client(status.endpoints[SIDES[side]], workers)
    client_id = str(status.client_id)

    def one(_: int) -> None:
        email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
        cognito.sign_up(
            ClientId=client_id,
            Username=email,
            Password="LiveKart-bench-1",
            UserAttributes=[
                {"Name": "email", "Value": email},
                {"Name": "custom:role", "Value": "customer"},
            ],
        )
        cognito.confirm_sign_up(
            ClientId=client_id, Username=email, ConfirmationCode=CONFIRMATION_CODE
        )

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(count)))
    return time.perf_counter() - started


def sign_up_rates(stacks: dict[str, Any], count: int, batches: int) -> dict[tuple[str, int], float]:
    """Sign-ups/s per side and K, the sides' batches alternated (the load on a shared
    machine moves over minutes); each side on its own stack (see the module doc)."""
    seconds = {(side, k): 0.0 for side in stacks for k in (1, 4, 16)}
    for k in (1, 4, 16):
        for batch in range(batches):
            order = list(stacks) if batch % 2 else list(reversed(stacks))
            for side in order:
                seconds[side, k] += sign_ups(stacks[side], side, k, count // batches)
    return {key: (count // batches) * batches / total for key, total in seconds.items()}


def new_stack(root: Path) -> LocalStack:
    stack = LocalStack(
        Settings(
            directory=root / uuid.uuid4().hex[:8],
            dynamodb_port=processes.free_port(),
            cognito_port=processes.free_port(),
            endpoint_port=processes.free_port(),
        )
    )
    stack.up()
    return stack


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--sign-ups", type=int, default=60, help="per side and K")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    os.environ.update({"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"})
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        stacks: dict[str, Any] = {}
        try:
            for side in SIDES:
                stacks[side] = new_stack(Path(tmp))
            medians = per_request(stacks["endpoint"], args.rounds)
            rates = sign_up_rates(stacks, args.sign_ups, batches=4)
        finally:
            for stack in stacks.values():
                stack.down(wipe=True)
    results = {
        "load_average": [round(x, 1) for x in (*load_before, *os.getloadavg())],
        "per_request_ms": {k: {s: round(v, 2) for s, v in d.items()} for k, d in medians.items()},
        "ratio": {k: round(d["endpoint"] / d["cognito-local"], 2) for k, d in medians.items()},
        "sign_ups_per_s": {f"{s} K={k}": round(v, 1) for (s, k), v in rates.items()},
    }
    met = all(r <= TARGET_RATIO for r in results["ratio"].values()) and all(
        rates["endpoint", k] >= rates["cognito-local", k] for k in (1, 4, 16)
    )
    if args.markdown:
        print("| request | cognito-local median | endpoint median | ratio (target ≤ 1.3) |")
        print("| --- | --- | --- | --- |")
        for kind, by_side in results["per_request_ms"].items():
            print(
                f"| {kind} | {by_side['cognito-local']} ms | {by_side['endpoint']} ms "
                f"| {results['ratio'][kind]} |"
            )
        print()
        print("| sign-ups at once | cognito-local straight | through the endpoint |")
        print("| --- | --- | --- |")
        for k in (1, 4, 16):
            print(f"| K={k} | {rates['cognito-local', k]:.1f}/s | {rates['endpoint', k]:.1f}/s |")
        print(f"\nload average before / after: {results['load_average']}")
    else:
        print(json.dumps(results, indent=2))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
