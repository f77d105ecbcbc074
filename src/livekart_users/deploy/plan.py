"""The plan's types, shared by the planner (which makes them) and the executor (which carries
them out): neither imports the other.

A `Step` names a resource, an action and the reason, and carries the exact API calls the
executor will make. A `Notice` is something the operator should know that changes nothing
(no trail logs the events the change handler needs): data, printed by the CLI as a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from livekart_users.deploy.models import OWNER_TAG, STACK_TAG, Target

CREATE, UPDATE, DELETE, NO_CHANGE = "create", "update", "delete", "no change"


@dataclass(frozen=True)
class Call:
    """One API call: `service` is a Clients attribute (or "pool" for the trigger attach)."""

    service: str
    operation: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    resource: str
    action: str
    reason: str
    calls: tuple[Call, ...] = ()


@dataclass(frozen=True)
class Notice:
    """A warning that changes nothing: what is wrong, and the command that fixes it."""

    resource: str
    message: str
    fix: str = ""


@dataclass
class Plan:
    target: Target
    steps: list[Step]
    refused: dict[str, str] = field(default_factory=dict)
    notices: list[Notice] = field(default_factory=list)

    @property
    def changes(self) -> list[Step]:
        return [s for s in self.steps if s.action != NO_CHANGE]


# --- ownership: what the planner may change or delete -----------------------------------------


def tagged(tags: Mapping[str, str] | None) -> bool:
    """Tagged as made or adopted by livekart-users."""
    return (tags or {}).get(OWNER_TAG[0]) == OWNER_TAG[1]


def tag_map(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags or []}


def tag_list() -> list[dict[str, str]]:
    return [{"Key": OWNER_TAG[0], "Value": OWNER_TAG[1]}]


def stack_of(tags: Mapping[str, str] | None) -> str | None:
    """The CloudFormation stack that owns a resource (CloudFormation tags what it creates
    `aws:cloudformation:stack-name`; our template adds `STACK_TAG`, which IAM roles keep too)."""
    tags = tags or {}
    return tags.get("aws:cloudformation:stack-name") or tags.get(STACK_TAG)


def removable(tags: Mapping[str, str] | None) -> bool:
    """Tagged as ours, and not a CloudFormation stack's (deleting the stack removes those)."""
    return tagged(tags) and not stack_of(tags)
