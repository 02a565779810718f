// A real OpenID provider for the sign-in tests: panva's oidc-provider with one confidential client.
//
//   OP_PORT            port to listen on (127.0.0.1); the issuer is http://127.0.0.1:<port>
//   OP_CLIENT_ID, OP_CLIENT_SECRET, OP_REDIRECT_URI, OP_POST_LOGOUT_REDIRECT_URI   the gateway
//   OP_ACCOUNTS        a JSON file, read at every sign-in and userinfo call, so a test can change
//                      a user's groups between sign-ins:
//                      {"alice": {"email": "...", "name": "...", "groups": ["devs"]}, ...}
//
// Sign-in uses the provider's development interactions: a form that takes any password for a
// login listed in OP_ACCOUNTS (the login is the subject). Consent is implied for the one client.
// RP-initiated logout is on. Nothing is fetched from the internet (the pages have no web fonts).
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is required`);
    process.exit(2);
  }
  return value;
};

const port = Number(env('OP_PORT'));
const issuer = `http://127.0.0.1:${port}`;
const accountsFile = env('OP_ACCOUNTS');
const clientId = env('OP_CLIENT_ID');

const readAccounts = () => JSON.parse(readFileSync(accountsFile, 'utf8'));

const page = (title, body) => `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>${title}</title>
<style>body{font-family:system-ui,sans-serif;max-width:24rem;margin:3rem auto;padding:0 1rem}
button{display:block;width:100%;margin:.5rem 0;padding:.5rem}</style></head><body>
<h1>Test identity provider</h1>${body}</body></html>`;

const configuration = {
  clients: [
    {
      client_id: clientId,
      client_secret: env('OP_CLIENT_SECRET'),
      client_name: 'Symbiosis Gateway',
      redirect_uris: [env('OP_REDIRECT_URI')],
      post_logout_redirect_uris: [env('OP_POST_LOGOUT_REDIRECT_URI')],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_post',
    },
  ],
  async findAccount(ctx, sub) {
    const account = readAccounts()[sub];
    if (!account) return undefined;
    return {
      accountId: sub,
      async claims() {
        // Read again: the groups may have changed since the session started.
        const now = readAccounts()[sub] || account;
        return {
          sub,
          preferred_username: now.preferred_username || sub,
          email: now.email,
          email_verified: now.email_verified ?? true,
          name: now.name || sub,
          groups: now.groups || [],
        };
      },
    };
  },
  claims: {
    openid: ['sub', 'groups'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
  },
  // Release the scopes' claims in the ID token too (not only from userinfo).
  conformIdTokenClaims: false,
  // A first-party client: consent is implied.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      const existing = await ctx.oidc.provider.Grant.find(grantId);
      if (existing) return existing;
    }
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid email profile offline_access');
    grant.addOIDCClaims(['sub', 'groups', 'email', 'email_verified', 'name', 'preferred_username']);
    await grant.save();
    return grant;
  },
  pkce: { required: () => false },
  cookies: { keys: ['test-only-op-cookie-key'] },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        ctx.body = page(
          'Sign out',
          `<p>Sign out of the test identity provider?</p>${form}
<button autofocus type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
<button type="submit" form="op.logoutForm">No, stay signed in</button>`,
        );
      },
      async postLogoutSuccessSource(ctx) {
        ctx.body = page('Signed out', '<p>You are signed out.</p>');
      },
    },
  },
  ttl: { AccessToken: 600, IdToken: 600, Session: 3600, Interaction: 600, Grant: 3600 },
};

const provider = new Provider(issuer, configuration);
provider.on('server_error', (ctx, error) => console.error('server_error', error));
provider.listen(port, '127.0.0.1', () => console.log(`oidc-provider listening on ${issuer}`));
