"""Whether a CloudTrail trail logs the management write events the change handler needs.

EventBridge receives Cognito's calls ("AWS API Call via CloudTrail") only when some trail logs
management write events in the pool's region. Read-only: deploy plans with it and doctor
checks it; neither creates a trail (it costs money and has a bucket policy of its own).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Trail:
    """Whether some trail logs management write events in the region, and which."""

    name: str | None

    @property
    def found(self) -> bool:
        return self.name is not None


def trail_fix(region: str, bucket: str = "BUCKET") -> str:
    """The commands that make a trail (the bucket needs CloudTrail's bucket policy)."""
    return (
        f"aws cloudtrail create-trail --region {region} --name livekart-users-trail "
        f"--s3-bucket-name {bucket} --is-multi-region-trail && aws cloudtrail start-logging "
        f"--region {region} --name livekart-users-trail (the bucket needs the policy that "
        "lets cloudtrail.amazonaws.com PutObject; see docs/deploy.md)"
    )


def find_trail(cloudtrail: Any, region: str) -> Trail:
    """A logging trail of this region (or multi-region) that records management writes."""
    for trail in cloudtrail.describe_trails(includeShadowTrails=True).get("trailList", []):
        if trail.get("HomeRegion") != region and not trail.get("IsMultiRegionTrail"):
            continue
        arn = trail.get("TrailARN") or trail.get("Name")
        status = cloudtrail.get_trail_status(Name=arn)
        if not status.get("IsLogging"):
            continue
        if _logs_management_writes(cloudtrail.get_event_selectors(TrailName=arn)):
            return Trail(str(trail.get("Name")))
    return Trail(None)


def _logs_management_writes(selectors: Mapping[str, Any]) -> bool:
    for basic in selectors.get("EventSelectors") or []:
        if basic.get("IncludeManagementEvents", True) and basic.get("ReadWriteType", "All") in (
            "All",
            "WriteOnly",
        ):
            return True
    for advanced in selectors.get("AdvancedEventSelectors") or []:
        fields = {f.get("Field"): f for f in advanced.get("FieldSelectors") or []}
        category = fields.get("eventCategory", {})
        read_only = fields.get("readOnly", {})
        if "Management" in (category.get("Equals") or []) and "true" not in (
            read_only.get("Equals") or []
        ):
            return True
    # A trail with no selectors at all logs every management event.
    return not selectors.get("EventSelectors") and not selectors.get("AdvancedEventSelectors")
