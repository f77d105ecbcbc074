// amazon-cognito-identity-js with its defaults (authenticateUser uses USER_SRP_AUTH),
// pointed at the stack with the pool's `endpoint` option.
// node identity_js.mjs ACTION POOL_ID CLIENT_ID ENDPOINT EMAIL PASSWORD
//   ACTION: signUp (sign up and confirm) | signIn | signInNewPassword NEW_PASSWORD (an
//   admin-created user: sign in with the temporary password, answer NEW_PASSWORD_REQUIRED)
// Prints one JSON line: {"ok": true, ...} or {"ok": false, "error": code, "message": ...}.
import {
  AuthenticationDetails, CognitoUser, CognitoUserAttribute, CognitoUserPool,
} from 'amazon-cognito-identity-js';

const [action, UserPoolId, ClientId, endpoint, email, password, newPassword] = process.argv.slice(2);
const pool = new CognitoUserPool({ UserPoolId, ClientId, endpoint });
const user = new CognitoUser({ Username: email, Pool: pool });

const promise = (start) => new Promise((resolve, reject) => start(resolve, reject));
const actions = {
  async signUp() {
    const attributes = [
      new CognitoUserAttribute({ Name: 'email', Value: email }),
      new CognitoUserAttribute({ Name: 'custom:role', Value: 'customer' }),
    ];
    const made = await promise((ok, fail) =>
      pool.signUp(email, password, attributes, null, (e, r) => (e ? fail(e) : ok(r))));
    await promise((ok, fail) =>
      user.confirmRegistration('123456', false, (e, r) => (e ? fail(e) : ok(r))));
    return { sub: made.userSub };
  },
  async signIn() {
    const details = new AuthenticationDetails({ Username: email, Password: password });
    const session = await promise((ok, fail) =>
      user.authenticateUser(details, {
        onSuccess: ok,
        onFailure: fail,
        newPasswordRequired: () => fail(Object.assign(new Error('new password required'), { code: 'NEW_PASSWORD_REQUIRED' })),
      }));
    return { sub: session.getIdToken().payload.sub, flow: user.getAuthenticationFlowType() };
  },
  async signInNewPassword() {
    const details = new AuthenticationDetails({ Username: email, Password: password });
    let challenged = false;
    const session = await promise((ok, fail) => {
      const callbacks = {
        onSuccess: ok,
        onFailure: fail,
        newPasswordRequired: () => {
          challenged = true;
          user.completeNewPasswordChallenge(newPassword, {}, callbacks);
        },
      };
      user.authenticateUser(details, callbacks);
    });
    return { sub: session.getIdToken().payload.sub, challenged };
  },
};

try {
  console.log(JSON.stringify({ ok: true, ...(await actions[action]()) }));
} catch (error) {
  console.log(JSON.stringify({ ok: false, error: error.code ?? error.name, message: error.message }));
}
