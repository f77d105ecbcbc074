"""Deploying the trigger onto an existing user pool: models → planner → executor.

- `models`: what should exist (plain data), for every resource of both functions;
- `plan`: the plan's types (Call, Step, Notice, Plan) shared by planner and executor;
- `planner`: reads what exists (read-only calls) and returns steps, each with its reason;
  one planner per kind of resource, used for both functions; `destroy` plans the removal;
- `executor`: the only code that changes anything; a dry run prints the plan instead;
- `pool`: the safe read-modify-write of a pool's `LambdaConfig`;
- `trail`: whether a CloudTrail trail logs what the change handler needs;
- `permissions`: the actions the operator's policies need beyond the calls themselves;
- `package`: the Lambda zip; `template`: the same resources as CloudFormation.
"""
