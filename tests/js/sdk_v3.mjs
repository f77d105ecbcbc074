// The AWS SDK for JavaScript v3, configured only by the environment `local env` sets
// (AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER, AWS_REGION, credentials): admin changes.
// node sdk_v3.mjs ACTION POOL_ID USERNAME [NAME=VALUE ...]
//   ACTION: update | disable | enable | delete
import {
  AdminDeleteUserCommand, AdminDisableUserCommand, AdminEnableUserCommand,
  AdminUpdateUserAttributesCommand, CognitoIdentityProviderClient,
} from '@aws-sdk/client-cognito-identity-provider';

const [action, UserPoolId, Username, ...pairs] = process.argv.slice(2);
const client = new CognitoIdentityProviderClient({ maxAttempts: 1 });
const commands = {
  update: () => new AdminUpdateUserAttributesCommand({
    UserPoolId,
    Username,
    UserAttributes: pairs.map((pair) => {
      const [Name, ...rest] = pair.split('=');
      return { Name, Value: rest.join('=') };
    }),
  }),
  disable: () => new AdminDisableUserCommand({ UserPoolId, Username }),
  enable: () => new AdminEnableUserCommand({ UserPoolId, Username }),
  delete: () => new AdminDeleteUserCommand({ UserPoolId, Username }),
};

try {
  const answer = await client.send(commands[action]());
  console.log(JSON.stringify({ ok: true, status: answer.$metadata.httpStatusCode }));
} catch (error) {
  console.log(JSON.stringify({ ok: false, error: error.name, message: error.message }));
}
