"""Benchmark of reconcile's memory at pool sizes no emulator can hold: 10 M users.

    .venv/bin/python bench/reconcile_memory.py [--sizes 1000000 10000000] [--markdown]

Reconcile keeps, per row of the table, one fixed record in `reconcile.TableIndex` and one
email digest; the pool is streamed a page at a time. This bench exercises exactly those
structures at full size, in a process of its own per size:
1. **index the table**: `TableIndex.add` for N rows of the real row shape (each row is built
   in the shape `schema.new_record`, the trigger's own recipe, gives it from Cognito-like
   attributes: sub, email, name, email_verified, custom:role), streamed as a table scan
   would, never kept;
2. **sort the pool**: for each of the N users, what `Reconciler._sort` does per user: the
   compared-field digest of the user (`schema.identity` + the enabled flag), `take` of their
   row, the comparison and, for 1% of them, the field hints.
Peak memory is the process's own high-water mark (`VmHWM`), minus its baseline after imports.
DynamoDB and Cognito are not involved: their pages are freed after each one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

TARGET_BYTES = 1_000_000_000  # 1 GB at 10 M users (issue 20)


def vm_hwm_bytes() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def vm_rss_bytes() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def measure(size: int, sort: bool = True, digests: bool = True) -> dict[str, Any]:
    """In this process: build the index of `size` rows, then sort `size` users against it."""
    from livekart_users import reconcile, schema

    baseline = vm_rss_bytes()
    timestamp = "2026-01-31T12:00:00.000Z"

    def attributes(i: int, sub: str) -> dict[str, str]:
        return {
            "sub": sub,
            "email": f"user{i}@example.com",
            "email_verified": "true",
            "name": f"User Number {i}",
            "custom:role": "vendor" if i % 10 == 0 else "customer",
        }

    # Subs (version-4 UUIDs in Cognito's lower-case form) derived from i: the same users on
    # both sides without keeping a list.
    def subs() -> Any:
        for i in range(size):
            x = f"{(i * 0x9E3779B97F4A7C15F39CC0605CEDC835) & ((1 << 128) - 1):032x}"
            yield i, f"{x[:8]}-{x[8:12]}-4{x[13:16]}-a{x[17:20]}-{x[20:]}"

    # One row from the trigger's own recipe; the others take its shape with their own values
    # (validating 10 M rows would measure `schema.validate`, not reconcile).
    first = next(subs())[1]
    template = schema.new_record(attributes(0, first), first, timestamp=timestamp)
    started = time.monotonic()
    index = reconcile.TableIndex()
    for i, sub in subs():
        if not digests:
            # The same records, stored by the same code, their digests made up: what a row
            # costs in memory does not depend on its digests' values, only the time does.
            mixed = (i * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
            made_up = mixed.to_bytes(8, "big")
            index.append(sub, made_up, mixed | 1, made_up + made_up[:4], timestamp, 0)
            continue
        row = dict(template)
        row.update(
            user_id=sub, username=sub, email=f"user{i}@example.com", name=f"User Number {i}"
        )
        index.add(row)
    index.seal()
    indexed = time.monotonic() - started
    after_index = vm_rss_bytes()

    started = time.monotonic()
    in_step = differ = 0
    for i, sub in subs() if sort else ():
        attrs = attributes(i, sub)
        if i % 100 == 0:
            attrs["name"] = "Renamed"
        identity = schema.identity(attrs, sub)
        compared = reconcile._compared_of_user(identity, True)
        number = index.take(sub)
        assert number is not None
        if index.identity_digest(number) == reconcile._identity_digest(compared):
            in_step += 1
        else:
            differ += 1
            reconcile._differing(index.hints(number), compared)
            index.updated_at(number)
    sorted_seconds = time.monotonic() - started
    if sort:
        assert differ == -(-size // 100) and in_step + differ == size
        assert next(iter(index.unseen()), None) is None
    return {
        "users": size,
        "baseline_mb": baseline / 1e6,
        "index_mb": (after_index - baseline) / 1e6,
        "peak_mb": (vm_hwm_bytes() - baseline) / 1e6,
        "bytes_per_user": (vm_hwm_bytes() - baseline) / size,
        "index_seconds": indexed,
        "sort_seconds": sorted_seconds,
        "differ": differ,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument(
        "--index-only", action="store_true", help="Skip stage 2 (it adds time, not memory)."
    )
    parser.add_argument(
        "--made-up-digests",
        action="store_true",
        help="Store made-up digests instead of computing them (same memory, a tenth of the "
        "time); implies --index-only.",
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child's own size
    options = parser.parse_args()
    if options.one:
        made_up = options.made_up_digests
        sort = not (options.index_only or made_up)
        print(json.dumps(measure(options.one, sort=sort, digests=not made_up)))
        return
    results = []
    for size in options.sizes:
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                str(size),
                *(["--index-only"] if options.index_only else []),
                *(["--made-up-digests"] if options.made_up_digests else []),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=3600,
        )
        result = json.loads(child.stdout.strip().splitlines()[-1])
        results.append(result)
        print(json.dumps(result), file=sys.stderr)
    if options.markdown:
        print("| users | index | peak above baseline | bytes a user | index built | users sorted |")
        print("|---:|---:|---:|---:|---:|---:|")
        for r in results:
            print(
                f"| {r['users']:,} | {r['index_mb']:.0f} MB | {r['peak_mb']:.0f} MB "
                f"| {r['bytes_per_user']:.0f} | {r['index_seconds']:.0f} s "
                f"| {r['sort_seconds']:.0f} s |"
            )
    largest = max(results, key=lambda r: r["users"])
    projected = largest["bytes_per_user"] * 10_000_000
    verdict = "meets" if projected <= TARGET_BYTES else "MISSES"
    print(
        f"\n{verdict} the target: {projected / 1e6:.0f} MB for 10 M users "
        f"(target {TARGET_BYTES / 1e6:.0f} MB)"
    )
    if projected > TARGET_BYTES:
        sys.exit(1)


if __name__ == "__main__":
    main()
