"""One cold start, run by bench/run.py in a fresh interpreter; not meant to be run by hand.

`cold.py MODE PAYLOAD`, where MODE is
- `trigger` (PAYLOAD: an event): import livekart_users.triggers and serve one invocation;
- `bare` (PAYLOAD: a DynamoDB item): the baseline, a bare boto3 handler: import boto3, build a
  DynamoDB client, make the same conditional PutItem (the item arrives ready-made).
(The what-ifs measured before, `gc.freeze()` after the import and no powertools event classes,
are both in the trigger now. bench/lambda_cold.py measures the cold start as Lambda runs it.)

The last stdout line is JSON: `ended` (wall clock at the end of the invocation, for the parent
to subtract its own start time from), `import_s` and `invoke_s` (perf_counter spans), and
`full_gcs` (how many full, generation-2, collections the process had run by then).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from collections.abc import Callable


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
    modes: dict[str, Callable[[str], tuple[float, float]]] = {
        "trigger": trigger,
        "bare": bare,
    }
    import_s, invoke_s = modes[mode](payload)
    ended = time.time()
    full_gcs = gc.get_stats()[2]["collections"]
    sys.stdout.flush()
    print(
        json.dumps(
            {"ended": ended, "import_s": import_s, "invoke_s": invoke_s, "full_gcs": full_gcs}
        )
    )


if __name__ == "__main__":
    main()
