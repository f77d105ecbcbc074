"""The local stack of real emulators: DynamoDB Local, cognito-local, a Lambda Invoke endpoint."""
