// A real OpenID Connect provider for the test run (the certified
// `oidc-provider` package), listening on 127.0.0.1. Not for production.
//
//   node server.js [--port N] [--clock-skew SECONDS] [--id-token-ttl SECONDS]
//
// Prints one JSON line, {"issuer": "http://127.0.0.1:PORT"}, once it listens.
//
// - Client `chat` (secret `chat-test-secret`) may redirect to any
//   http://127.0.0.1:<port>/auth/oidc/<id>/callback, so test servers on
//   random ports can use it.
// - Any login name and any password sign in (oidc-provider's development
//   interactions); consent is implied for `chat`. Login `ada.lovelace` gets
//   name "Ada Lovelace", email ada.lovelace@example.test and a picture.
// - `--clock-skew -300` runs this provider's clock five minutes slow, so with
//   a short `--id-token-ttl` its ID tokens arrive already expired.

import { generateKeyPairSync, randomUUID } from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] !== undefined ? Number(process.argv[i + 1]) : fallback;
}

const port = arg('port', 0);
const skewSeconds = arg('clock-skew', 0);
const idTokenTtl = arg('id-token-ttl', 3600);

if (skewSeconds !== 0) {
  // oidc-provider reads the time through Date.now (iat, exp, code expiry).
  const realNow = Date.now;
  Date.now = () => realNow() + skewSeconds * 1000;
}

/** "ada.lovelace" -> "Ada Lovelace". */
function displayName(login) {
  return login
    .split(/[._-]+/)
    .filter(Boolean)
    .map((w) => w[0].toUpperCase() + w.slice(1))
    .join(' ');
}

function avatarSvg(login) {
  const initials = displayName(login)
    .split(' ')
    .map((w) => w[0])
    .join('')
    .slice(0, 2)
    .replace(/[^A-Za-z0-9]/g, '');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64" fill="#3b6ea5"/><text x="32" y="40" font-size="24" text-anchor="middle" fill="#fff" font-family="sans-serif">${initials}</text></svg>`;
}

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

const server = http.createServer();
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'chat',
        client_secret: 'chat-test-secret',
        redirect_uris: ['http://127.0.0.1/auth/oidc/test/callback'],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    async findAccount(_ctx, sub) {
      return {
        accountId: sub,
        async claims() {
          return {
            sub,
            name: displayName(sub) || sub,
            email: `${sub}@example.test`,
            email_verified: true,
            picture: `${issuer}/avatar/${encodeURIComponent(sub)}.svg`,
          };
        },
      };
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'picture'],
    },
    // First-party client: consent is implied (the usual recipe).
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid email profile');
      await grant.save();
      return grant;
    },
    // Each instance signs with its own fresh key (not the built-in dev key).
    jwks: { keys: [signingKey()] },
    ttl: { IdToken: idTokenTtl },
    cookies: { keys: ['test-only-cookie-key'] },
    features: { devInteractions: { enabled: true } },
  });

  // Test servers listen on random ports and use several provider ids.
  const loopbackCallback = /^http:\/\/127\.0\.0\.1:\d+\/auth\/oidc\/[a-z0-9-]+\/callback$/;
  const allowed = provider.Client.prototype.redirectUriAllowed;
  provider.Client.prototype.redirectUriAllowed = function redirectUriAllowed(uri) {
    return loopbackCallback.test(uri) || allowed.call(this, uri);
  };

  const handle = provider.callback();
  server.on('request', (req, res) => {
    const avatar = /^\/avatar\/([^/]+)\.svg$/.exec(req.url ?? '');
    if (avatar) {
      res.writeHead(200, { 'content-type': 'image/svg+xml', 'cache-control': 'max-age=3600' });
      res.end(avatarSvg(decodeURIComponent(avatar[1])));
      return;
    }
    handle(req, res);
  });
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
