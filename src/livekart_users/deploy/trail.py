"""Whether a CloudTrail trail logs the management write events the change handler needs.

EventBridge receives Cognito's calls ("AWS API Call via CloudTrail") only when some trail logs
management write events in the pool's region. Read-only: deploy plans with it and doctor
checks it; neither creates a trail (it costs money and has a bucket policy of its own).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from livekart_users import aws

# What CloudTrail answers, per trail, when a trail cannot be read from this account: an
# organization trail seen from a member account (GetTrailStatus and GetEventSelectors answer
# TrailNotFoundException or CloudTrailARNInvalidException "AccountID in ARN is wrong"), a
# shadow copy read outside its home region, or reads the operator's policy does not grant.
# Reported against organization trails by steampipe-plugin-aws#577, aws-recon#22,
# awslimitchecker#439; cloud-custodian#6394 notes GetEventSelectors fails for them.
UNREADABLE = frozenset(
    {
        "TrailNotFoundException",
        "CloudTrailARNInvalidException",
        "InvalidHomeRegionException",
        "AccessDeniedException",
        "AccessDenied",
        "UnsupportedOperationException",
    }
)


@dataclass(frozen=True)
class Trail:
    """Whether some trail logs management write events in the region, and which. A trail of
    another account (an organization's) cannot be read from here: `checked` is then False
    and `owner` names the account whose operators can confirm what it logs."""

    name: str | None
    checked: bool = True
    owner: str | None = None

    @property
    def found(self) -> bool:
        return self.name is not None

    def describe(self, region: str) -> str:
        if self.checked:
            return f"trail {self.name} logs management write events in {region}"
        return (
            f"organization trail {self.name} of account {self.owner} covers {region} "
            "(its selectors are readable only from that account: it must log management "
            "write events)"
        )


def trail_fix(region: str, bucket: str = "BUCKET") -> str:
    """The commands that make a trail (the bucket needs CloudTrail's bucket policy)."""
    return (
        f"aws cloudtrail create-trail --region {region} --name livekart-users-trail "
        f"--s3-bucket-name {bucket} --is-multi-region-trail && aws cloudtrail start-logging "
        f"--region {region} --name livekart-users-trail (the bucket needs the policy that "
        "lets cloudtrail.amazonaws.com PutObject; see docs/deploy.md)"
    )


def _account_of(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 and parts[0] == "arn" else None


def find_trail(cloudtrail: Any, region: str, account: str | None = None) -> Trail:
    """A logging trail of this region (or multi-region) that records management writes.

    A trail this account cannot read (another account's organization trail, a shadow copy
    CloudTrail refuses to describe here) is never a reason to fail: it is skipped, and an
    organization trail covering the region counts, unchecked, when no trail of this account
    does.
    """
    unchecked: Trail | None = None
    for trail in cloudtrail.describe_trails(includeShadowTrails=True).get("trailList", []):
        if trail.get("HomeRegion") != region and not trail.get("IsMultiRegionTrail"):
            continue
        arn = str(trail.get("TrailARN") or trail.get("Name"))
        owner = _account_of(arn)
        if account is not None and owner not in (None, account):
            # Its status and selectors answer only to its own account.
            if trail.get("IsOrganizationTrail") and unchecked is None:
                unchecked = Trail(str(trail.get("Name")), checked=False, owner=owner)
            continue
        try:
            if not cloudtrail.get_trail_status(Name=arn).get("IsLogging"):
                continue
            selectors = cloudtrail.get_event_selectors(TrailName=arn)
        except ClientError as exc:
            if aws.error_code(exc) not in UNREADABLE:
                raise
            if trail.get("IsOrganizationTrail") and unchecked is None:
                unchecked = Trail(str(trail.get("Name")), checked=False, owner=owner)
            continue
        if _logs_management_writes(selectors):
            return Trail(str(trail.get("Name")), owner=owner)
    return unchecked or Trail(None)


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
