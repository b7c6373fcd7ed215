// A real OpenID Connect provider for the console's single sign-on test:
// node-oidc-provider (panva) with its development login and consent pages,
// which sign in any known login with any password. Two people: ops@ in the
// group `ops`, viewer@ in `support`. Claims follow the standard (scope
// claims only from userinfo), so Vane's userinfo path is what reads them.
// Run by tests/it/console_sso.rs:
//   node idp.mjs <port> <redirect url> <client secret>
// with VANE_PLAYWRIGHT_DIR naming a directory where oidc-provider is installed.

import { createRequire } from "node:module";

const [port, redirectUrl, clientSecret] = process.argv.slice(2);
const require = createRequire(`${process.env.VANE_PLAYWRIGHT_DIR}/`);
const Provider = (await import(require.resolve("oidc-provider"))).default;

const people = {
  "ops@example.com": ["ops"],
  "viewer@example.com": ["support"],
};

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{
    client_id: "vane",
    client_secret: clientSecret,
    redirect_uris: [redirectUrl],
    grant_types: ["authorization_code"],
    response_types: ["code"],
  }],
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["name"],
    groups: ["groups"],
  },
  cookies: { keys: ["vane-test-provider-cookie-key"] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    if (!people[id]) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: id, email_verified: true, name: id.split("@")[0], groups: people[id] };
      },
    };
  },
});
// The development pages warn on every start; the test reads only "listening".
provider.listen(Number(port), "127.0.0.1", () => console.log(`provider listening on ${port}`));
