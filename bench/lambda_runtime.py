"""A stand-in for the Lambda python3.13 runtime, run by bench/lambda_cold.py; not by hand.

`lambda_runtime.py MODULE.FUNCTION TIMEOUT_S` with the event on stdin: import the handler's
module (that is Lambda's init phase), then call the handler once with a context whose
remaining time runs from the call, as Lambda's does (it leaves init out). Standard library
only: it must not put anything on the path that the zip or the runtime's SDK would not.

The last stdout line is JSON: `ended` (wall clock when the handler returned, for the parent
to subtract the time it started the process from), `init_s` and `invoke_s` (perf_counter
spans of the import and of the call), and `cpu_s`: the CPU time the process had used by then
(all its threads, from its start), which the machine's other load does not inflate.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import uuid


class Context:
    """What Lambda's context object offers that a handler reads."""

    def __init__(self, timeout: float) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._ends = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends - time.monotonic()) * 1000))


def main() -> None:
    name, timeout = sys.argv[1], float(sys.argv[2])
    event = json.loads(sys.stdin.read())
    module_name, function = name.rsplit(".", 1)
    started = time.perf_counter()
    handler = getattr(importlib.import_module(module_name), function)
    initialised = time.perf_counter()
    handler(event, Context(timeout))
    ended = time.time()
    cpu = time.process_time()
    invoked = time.perf_counter()
    sys.stdout.flush()
    print(
        json.dumps(
            {
                "ended": ended,
                "init_s": initialised - started,
                "invoke_s": invoked - initialised,
                "cpu_s": cpu,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
