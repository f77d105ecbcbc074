"""One cold start, run by bench/run.py in a fresh interpreter; not meant to be run by hand.

`cold.py MODE PAYLOAD`, where MODE is
- `trigger` (PAYLOAD: an event): import livekart_users.triggers and serve one invocation;
- `bare` (PAYLOAD: a DynamoDB item): the baseline, a bare boto3 handler: import boto3, build a
  DynamoDB client, make the same conditional PutItem (the item arrives ready-made);
- `frozen`: a what-if, `trigger` with `gc.freeze()` after the import (the objects the imports
  made move to the permanent generation, so the first invocation does not pay for a full
  collection over them);
- `lean`: a what-if, `frozen` without powertools' Cognito event classes (importing them runs
  the `data_classes` package, which imports every event class); stand-ins that read the event
  as a plain dict take their place, as a trigger written without them would.

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
import types
from collections.abc import Callable
from typing import Any

DATA_CLASSES = "aws_lambda_powertools.utilities.data_classes"


class DictEvent(dict[str, Any]):
    """What the trigger reads of a powertools Cognito event, by plain dict access."""

    @property
    def request(self) -> types.SimpleNamespace:
        return types.SimpleNamespace(user_attributes=self["request"].get("userAttributes"))


def without_event_classes() -> None:
    module = types.ModuleType(f"{DATA_CLASSES}.cognito_user_pool_event")
    for name in ("PostConfirmationTriggerEvent", "PostAuthenticationTriggerEvent"):
        setattr(module, name, DictEvent)
    sys.modules[DATA_CLASSES] = types.ModuleType(DATA_CLASSES)
    sys.modules[module.__name__] = module


def trigger(event_json: str, freeze: bool = False, lean: bool = False) -> tuple[float, float]:
    started = time.perf_counter()
    if lean:
        without_event_classes()
    from livekart_users import triggers

    if freeze:
        gc.freeze()
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
        "frozen": lambda event: trigger(event, freeze=True),
        "lean": lambda event: trigger(event, freeze=True, lean=True),
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
