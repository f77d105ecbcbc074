"""One cold start, run by bench/run.py in a fresh interpreter; not meant to be run by hand.

`cold.py trigger EVENT_JSON`: import livekart_users.triggers and serve one invocation.
`cold.py bare ITEM_JSON`: the baseline, a bare boto3 handler: import boto3, build a DynamoDB
client, make the same conditional PutItem (the item arrives ready-made, in DynamoDB's form).

The last stdout line is JSON: `ended` (wall clock at the end of the invocation, for the parent
to subtract its own start time from), `import_s` and `invoke_s` (perf_counter spans).
"""

from __future__ import annotations

import json
import os
import sys
import time


def trigger(event_json: str) -> tuple[float, float]:
    started = time.perf_counter()
    from livekart_users import triggers

    imported = time.perf_counter()
    triggers.handler(json.loads(event_json), None)
    return imported - started, time.perf_counter() - imported


def bare(item_json: str) -> tuple[float, float]:
    started = time.perf_counter()
    import boto3

    imported = time.perf_counter()
    client = boto3.client("dynamodb")
    client.put_item(
        TableName=os.environ["USERS_TABLE"],
        Item=json.loads(item_json),
        ConditionExpression="attribute_not_exists(user_id)",
    )
    return imported - started, time.perf_counter() - imported


def main() -> None:
    mode, payload = sys.argv[1:3]
    import_s, invoke_s = {"trigger": trigger, "bare": bare}[mode](payload)
    ended = time.time()
    sys.stdout.flush()
    print(json.dumps({"ended": ended, "import_s": import_s, "invoke_s": invoke_s}))


if __name__ == "__main__":
    main()
