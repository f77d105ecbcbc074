"""Deploying the trigger onto an existing user pool: models → planner → executor.

- `models`: what should exist (plain data);
- `planner`: reads what exists (read-only calls) and returns steps, each with its reason;
- `executor`: the only code that changes anything; a dry run prints the plan instead;
- `pool`: the safe read-modify-write of a pool's `LambdaConfig`;
- `package`: the Lambda zip; `template`: the same resources as CloudFormation.
"""
