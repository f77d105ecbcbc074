"""The AWS clients deploy, destroy and doctor use: one region, one session (botocore loads
each service model and the credentials once), each client built on first use (doctor on the
local stack never needs IAM, STS, Logs or CloudWatch, and building a client costs its model)."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from livekart_users import aws


class Clients:
    SERVICES: ClassVar[dict[str, str]] = {
        "sts": "sts",
        "iam": "iam",
        "lambda_": "lambda",
        "logs": "logs",
        "cloudwatch": "cloudwatch",
        "dynamodb": "dynamodb",
        "cognito": "cognito-idp",
        # The change handler's rule, dead-letter queue, and the trail it needs.
        "events": "events",
        "sqs": "sqs",
        "cloudtrail": "cloudtrail",
    }
    sts: Any
    iam: Any
    lambda_: Any
    logs: Any
    cloudwatch: Any
    dynamodb: Any
    cognito: Any
    events: Any
    sqs: Any
    cloudtrail: Any

    def __init__(
        self,
        region: str,
        sts: Any = None,
        iam: Any = None,
        lambda_: Any = None,
        logs: Any = None,
        cloudwatch: Any = None,
        dynamodb: Any = None,
        cognito: Any = None,
        *,
        session: Any = None,
    ) -> None:
        """Clients given here are used as they are (tests pass stubs); the others are built
        from `session` when first used."""
        self.region = region
        self._session = session
        self._lock = threading.Lock()
        given = dict(
            sts=sts,
            iam=iam,
            lambda_=lambda_,
            logs=logs,
            cloudwatch=cloudwatch,
            dynamodb=dynamodb,
            cognito=cognito,
        )
        self.__dict__.update({k: v for k, v in given.items() if v is not None})

    @classmethod
    def create(cls, region: str) -> Clients:
        return cls(region, session=aws.current_session())

    def __getattr__(self, name: str) -> Any:
        service = type(self).SERVICES.get(name)
        if service is None:
            raise AttributeError(name)
        with self._lock:  # doctor's checks ask from several threads at once
            if name not in self.__dict__:
                self.__dict__[name] = aws.client(
                    service, region_name=self.region, session=self._session or aws.current_session()
                )
        return self.__dict__[name]

    def account(self) -> str:
        return str(self.sts.get_caller_identity()["Account"])
