// Amplify JS v6 with its defaults (signIn uses USER_SRP_AUTH), pointed at the stack's
// Cognito endpoint with Auth.Cognito.userPoolEndpoint, as an app would be.
// node amplify.mjs POOL_ID CLIENT_ID ENDPOINT EMAIL PASSWORD NEW_EMAIL
import { Amplify } from 'aws-amplify';
import {
  confirmSignUp, confirmUserAttribute, deleteUser, fetchAuthSession, signIn, signUp,
  updateUserAttributes,
} from 'aws-amplify/auth';
import { settings, step } from './steps.mjs';

const { poolId, clientId, endpoint, email, password } = settings();
const newEmail = process.argv[7];
Amplify.configure({
  Auth: { Cognito: { userPoolId: poolId, userPoolClientId: clientId, userPoolEndpoint: endpoint } },
});

await step('signUp', async () => {
  const { isSignUpComplete, nextStep } = await signUp({
    username: email,
    password,
    options: { userAttributes: { email, name: 'Amplify User', 'custom:role': 'customer' } },
  });
  return { isSignUpComplete, nextStep: nextStep.signUpStep };
});
await step('confirmSignUp', async () => {
  const { isSignUpComplete } = await confirmSignUp({ username: email, confirmationCode: '123456' });
  return { isSignUpComplete };
});
await step('signIn', async () => {
  const { isSignedIn, nextStep } = await signIn({ username: email, password });
  const session = await fetchAuthSession();
  return { isSignedIn, nextStep: nextStep.signInStep, sub: session.userSub };
});
await step('updateUserAttributes', async () => {
  const output = await updateUserAttributes({ userAttributes: { email: newEmail, name: 'Renamed' } });
  return {
    updated: Object.fromEntries(Object.entries(output).map(([k, v]) => [k, v.isUpdated])),
    emailStep: output.email.nextStep.updateAttributeStep,
  };
});
// A new email is verified with the code Cognito sends to it (the stack's: 123456).
await step('confirmUserAttribute', async () => {
  await confirmUserAttribute({ userAttributeKey: 'email', confirmationCode: '123456' });
  return {};
});
await step('deleteUser', async () => {
  await deleteUser();
  return {};
});
process.exit(0);
