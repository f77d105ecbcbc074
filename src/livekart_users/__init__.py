"""livekart-users: keeps a DynamoDB users table in step with an Amazon Cognito user pool."""

__version__ = "0.1.0"
