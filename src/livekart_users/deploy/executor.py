"""The only code that changes anything: carries out a plan's calls, in order.

It waits where AWS needs it: a new IAM role is not assumable by Lambda for some seconds, and a
function accepts its next update only once `LastUpdateStatus` is no longer InProgress.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from livekart_users import aws
from livekart_users.deploy import models, pool
from livekart_users.deploy.clients import Clients
from livekart_users.deploy.planner import Call, Plan, Step

ROLE_PROPAGATION_SECONDS = 60.0


class Executor:
    def __init__(
        self,
        clients: Clients,
        plan: Plan,
        *,
        sleep: Callable[[float], None] = time.sleep,
        report: Callable[[Step], None] = lambda step: None,
    ) -> None:
        self.clients = clients
        self.plan = plan
        self.sleep = sleep
        self.report = report

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
        if call.operation == "create_function":
            return self._create_function(client, dict(call.params))
        return getattr(client, call.operation)(**call.params)

    def _create_function(self, client: Any, params: dict[str, Any]) -> Any:
        """CreateFunction, retried while the new role has not propagated to Lambda yet."""
        waited = 0.0
        pause = 2.0
        while True:
            try:
                return client.create_function(**params)
            except Exception as exc:
                cannot_assume = aws.error_code(exc) == "InvalidParameterValueException" and (
                    "cannot be assumed" in str(exc)
                )
                if not cannot_assume or waited >= ROLE_PROPAGATION_SECONDS:
                    raise
            self.sleep(pause)
            waited += pause
            pause = min(pause * 1.5, 10.0)

    def _dynamodb_wait_table(self, TableName: str) -> None:
        self.clients.dynamodb.get_waiter("table_exists").wait(
            TableName=TableName, WaiterConfig={"Delay": 2, "MaxAttempts": 120}
        )

    def _iam_wait_role(self, RoleName: str) -> None:
        self.clients.iam.get_waiter("role_exists").wait(
            RoleName=RoleName, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
        )

    def _lambda__wait_function(self, FunctionName: str) -> None:
        self.clients.lambda_.get_waiter("function_updated_v2").wait(
            FunctionName=FunctionName, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )

    def _pool_attach(self, force: bool) -> None:
        target = self.plan.target
        # Read again right before writing, so a change made since the plan is not lost.
        pool.attach(
            self.clients.cognito,
            target.user_pool_id,
            target.function_arn,
            models.TRIGGER_SLOTS,
            force=force,
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
) -> list[Step]:
    """Carry out every change of `plan`; the steps done."""
    return Executor(clients, plan, sleep=sleep, report=report).run()
