"""The only code that changes anything: carries out a plan's calls, in order.

It waits where AWS needs it, with `sleep` passed in so tests never wait: a new IAM role is not
assumable by Lambda for some seconds; a new function is invokable once Active
(`function_active_v2`) and takes its next update once `LastUpdateStatus` is Successful
(`function_updated_v2`); a table takes one `UpdateTable` at a time; point-in-time recovery
is refused for a while on a table created moments ago.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from livekart_users import aws
from livekart_users.deploy import models, pool
from livekart_users.deploy.clients import Clients
from livekart_users.deploy.plan import Call, Plan, Step
from livekart_users.exceptions import LivekartUsersError

ROLE_PROPAGATION_SECONDS = 60.0
# What Lambda answers (InvalidParameterValueException) while a role made or changed moments
# ago has not reached it: the role cannot be assumed yet, or its new policy is not seen yet —
# for a dead-letter queue Lambda checks the role may SendMessage ("The provided execution
# role does not have permissions to call SendMessage on SQS"). IAM is eventually consistent.
NOT_PROPAGATED = ("cannot be assumed", "does not have permissions to call")
# UpdateContinuousBackups right after CreateTable fails with this for a while (DynamoDB
# documents it as retryable); about two minutes of backoff covers it.
PITR_UNAVAILABLE = "ContinuousBackupsUnavailableException"
PITR_RETRY_SECONDS = 120.0
TABLE_WAIT_SECONDS = 900.0


class Executor:
    def __init__(
        self,
        clients: Clients,
        plan: Plan,
        *,
        sleep: Callable[[float], None] = time.sleep,
        report: Callable[[Step], None] = lambda step: None,
        poll_seconds: float = 1.0,
    ) -> None:
        self.clients = clients
        self.plan = plan
        self.sleep = sleep
        self.report = report
        # botocore's waiters sleep by themselves: their delay is the one thing tests set.
        self.poll = {"Delay": poll_seconds, "MaxAttempts": 300}

    def run(self) -> list[Step]:
        done: list[Step] = []
        for step in self.plan.changes:
            for call in step.calls:
                self._call(call)
            self.report(step)
            done.append(step)
        return done

    def _call(self, call: Call) -> Any:
        special = getattr(self, f"_{call.service}_{call.operation}", None)
        if special is not None:
            return special(**call.params)
        client = getattr(self.clients, call.service)
        if call.operation in ("create_function", "update_function_configuration"):
            return self._while_role_propagates(getattr(client, call.operation), call.params)
        return getattr(client, call.operation)(**call.params)

    def _while_role_propagates(self, operation: Any, params: Any) -> Any:
        """CreateFunction or UpdateFunctionConfiguration, retried while the role (or its
        policy) has not propagated to Lambda yet."""
        waited = 0.0
        pause = 2.0
        while True:
            try:
                return operation(**params)
            except Exception as exc:
                propagating = aws.error_code(exc) == "InvalidParameterValueException" and any(
                    words in str(exc) for words in NOT_PROPAGATED
                )
                if not propagating or waited >= ROLE_PROPAGATION_SECONDS:
                    raise
            self.sleep(pause)
            waited += pause
            pause = min(pause * 1.5, 10.0)

    def _dynamodb_wait_table(self, TableName: str) -> None:
        """Until the table is ACTIVE and no index is still being set up (a new GSI counts as
        ready once it backfills): DynamoDB takes one UpdateTable at a time."""
        waited = 0.0
        while True:
            table = self.clients.dynamodb.describe_table(TableName=TableName)["Table"]
            indexes = table.get("GlobalSecondaryIndexes") or []
            busy = [
                i["IndexName"]
                for i in indexes
                if i.get("IndexStatus", "ACTIVE") != "ACTIVE"
                and not (i.get("IndexStatus") == "CREATING" and i.get("Backfilling"))
            ]
            if table.get("TableStatus") == "ACTIVE" and not busy:
                return
            if waited >= TABLE_WAIT_SECONDS:
                raise LivekartUsersError(
                    f"table {TableName} is still {table.get('TableStatus')}"
                    f"{' (index ' + ', '.join(busy) + ')' if busy else ''} after "
                    f"{TABLE_WAIT_SECONDS:.0f} s: run deploy again once it is ACTIVE"
                )
            self.sleep(5.0)
            waited += 5.0

    def _dynamodb_update_continuous_backups(self, **params: Any) -> Any:
        pause, waited = 5.0, 0.0
        while True:
            try:
                return self.clients.dynamodb.update_continuous_backups(**params)
            except Exception as exc:
                if aws.error_code(exc) != PITR_UNAVAILABLE or waited >= PITR_RETRY_SECONDS:
                    raise
            self.sleep(pause)
            waited += pause
            pause = min(pause * 2, 30.0)

    def _iam_wait_role(self, RoleName: str) -> None:
        self.clients.iam.get_waiter("role_exists").wait(
            RoleName=RoleName, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
        )

    def _lambda__wait_function_active(self, FunctionName: str) -> None:
        self.clients.lambda_.get_waiter("function_active_v2").wait(
            FunctionName=FunctionName, WaiterConfig=self.poll
        )

    def _lambda__wait_function_updated(self, FunctionName: str) -> None:
        self.clients.lambda_.get_waiter("function_updated_v2").wait(
            FunctionName=FunctionName, WaiterConfig=self.poll
        )

    def _lambda__release(self, FunctionName: str, CodeSha256: str, alias_exists: bool) -> None:
        """Publish `$LATEST` as a version (only if its code is still `CodeSha256`), wait until
        the version is Active, then point the alias at it: one call switches every invocation
        from the old version to the new."""
        lam = self.clients.lambda_
        version = lam.publish_version(FunctionName=FunctionName, CodeSha256=CodeSha256)["Version"]
        lam.get_waiter("published_version_active").wait(
            FunctionName=FunctionName,
            Qualifier=version,
            WaiterConfig=self.poll,
        )
        point = lam.update_alias if alias_exists else lam.create_alias
        point(FunctionName=FunctionName, Name=models.ALIAS, FunctionVersion=version)

    def _pool_attach(self, slots: tuple[str, ...], function_arn: str, force: bool) -> None:
        target = self.plan.target
        # Read again right before writing, so a change made since the plan is not lost.
        pool.attach(
            self.clients.cognito,
            target.user_pool_id,
            function_arn,
            slots,
            force=force,
            owner_arn=target.function_arn,
        )

    def _pool_detach(self) -> None:
        target = self.plan.target
        pool.detach(
            self.clients.cognito, target.user_pool_id, target.function_arn, models.TRIGGER_SLOTS
        )


def apply(
    plan: Plan,
    clients: Clients,
    *,
    sleep: Callable[[float], None] = time.sleep,
    report: Callable[[Step], None] = lambda step: None,
    poll_seconds: float = 1.0,
) -> list[Step]:
    """Carry out every change of `plan`; the steps done."""
    return Executor(clients, plan, sleep=sleep, report=report, poll_seconds=poll_seconds).run()
