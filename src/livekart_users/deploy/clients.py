"""The AWS clients deploy, destroy and doctor use, built once per run in one region."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from livekart_users import aws


@dataclass
class Clients:
    region: str
    sts: Any
    iam: Any
    lambda_: Any
    logs: Any
    cloudwatch: Any
    dynamodb: Any
    cognito: Any
    # The change handler's rule, dead-letter queue, and the trail it needs.
    events: Any = None
    sqs: Any = None
    cloudtrail: Any = None

    @classmethod
    def create(cls, region: str) -> Clients:
        def make(service: str) -> Any:
            return aws.client(service, region_name=region)

        return cls(
            region=region,
            sts=make("sts"),
            iam=make("iam"),
            lambda_=make("lambda"),
            logs=make("logs"),
            cloudwatch=make("cloudwatch"),
            dynamodb=make("dynamodb"),
            cognito=make("cognito-idp"),
            events=make("events"),
            sqs=make("sqs"),
            cloudtrail=make("cloudtrail"),
        )

    def account(self) -> str:
        return str(self.sts.get_caller_identity()["Account"])
