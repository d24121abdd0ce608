// The partner flow against a running Tollgate, driven by oauth4webapi, a
// strict third-party OAuth 2.0 client, with its own validation: discovery
// (RFC 8414: the issuer must be the one asked for), the authorization
// response (RFC 9207 iss, state), the token, introspection (RFC 7662),
// userinfo (sub must match), refresh and revocation (RFC 7009) responses.
//
//   node flow.mjs <issuer> <basic|post>
//
// The user's part (sign-in, consent) is played by the Go test that runs
// this script (integration/oauth4webapi_test.go), over stdio:
//   stdout  AUTHORIZE <authorization URL>
//   stdin   the callback URL the gateway redirected the browser to
// Every check prints "PASS <name>"; the last line is "OK". Any failure
// prints "FAIL <name>: <reason>" and exits 1.

import * as oauth from 'oauth4webapi'
import { webcrypto } from 'node:crypto'
import { createInterface } from 'node:readline'

// Node 18 (Debian bookworm's nodejs) has WebCrypto but not as a global.
globalThis.crypto ??= webcrypto

const [issuerArg, authStyle] = process.argv.slice(2)
if (!issuerArg || !['basic', 'post'].includes(authStyle)) {
  console.error('usage: node flow.mjs <issuer> <basic|post>')
  process.exit(2)
}

// The demo partner of Caddyfile.example.
const client = { client_id: 'ywc_a1b2c3d4' }
const clientSecret = 'demo-client-secret'
const redirectUri = 'http://localhost:9999/callback'
const scope = 'profile:read seatime:read'
const clientAuth = authStyle === 'basic' ? oauth.ClientSecretBasic(clientSecret) : oauth.ClientSecretPost(clientSecret)
// The test gateway is plain http on loopback; oauth4webapi refuses http
// unless told otherwise, for each request.
const insecure = { [oauth.allowInsecureRequests]: true }

let step = 'start'
function pass(name, detail) {
  console.log(`PASS ${name}${detail === undefined ? '' : ' ' + JSON.stringify(detail)}`)
}
function check(cond, what) {
  if (!cond) throw new Error(what)
}
// expectFailure runs fn, which must throw an oauth4webapi error with the
// given code (and, for response body errors, OAuth error).
async function expectFailure(name, fn, code, error) {
  try {
    await fn()
  } catch (err) {
    check(err.code === code, `${name}: threw ${err.code} (${err.message}), want ${code}`)
    if (error) check(err.error === error, `${name}: error ${err.error}, want ${error}`)
    pass(name)
    return
  }
  throw new Error(`${name}: no error, want ${code}`)
}

const stdin = createInterface({ input: process.stdin })
const lines = stdin[Symbol.asyncIterator]()
async function readLine() {
  const { value, done } = await lines.next()
  if (done) throw new Error('stdin closed before the callback URL came')
  return value.trim()
}

async function main() {
  const issuer = new URL(issuerArg)

  step = 'discovery'
  const as = await oauth.processDiscoveryResponse(
    issuer,
    await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }),
  )
  check(as.issuer === issuerArg, `issuer ${as.issuer}, want ${issuerArg}`)
  check(as.code_challenge_methods_supported?.includes('S256'), 'S256 not advertised')
  check(as.authorization_response_iss_parameter_supported === true, 'iss parameter not advertised')
  for (const ep of ['authorization_endpoint', 'token_endpoint', 'introspection_endpoint', 'revocation_endpoint', 'userinfo_endpoint']) {
    check(typeof as[ep] === 'string', `${ep} missing`)
  }
  pass('discovery', { issuer: as.issuer })

  // The same document fetched as another issuer (the 127.0.0.1 origin of
  // the same gateway) must be refused: RFC 8414 §3.3.
  step = 'discovery issuer mismatch'
  const other = new URL(issuerArg.replace('//localhost:', '//127.0.0.1:'))
  await expectFailure('discovery issuer mismatch', async () =>
    oauth.processDiscoveryResponse(other, await oauth.discoveryRequest(other, { algorithm: 'oauth2', ...insecure })),
  oauth.JSON_ATTRIBUTE_COMPARISON)

  step = 'authorization request'
  const codeVerifier = oauth.generateRandomCodeVerifier()
  const state = oauth.generateRandomState()
  const authUrl = new URL(as.authorization_endpoint)
  authUrl.searchParams.set('client_id', client.client_id)
  authUrl.searchParams.set('redirect_uri', redirectUri)
  authUrl.searchParams.set('response_type', 'code')
  authUrl.searchParams.set('scope', scope)
  authUrl.searchParams.set('code_challenge', await oauth.calculatePKCECodeChallenge(codeVerifier))
  authUrl.searchParams.set('code_challenge_method', 'S256')
  authUrl.searchParams.set('state', state)
  console.log(`AUTHORIZE ${authUrl.href}`)
  const callback = new URL(await readLine())

  step = 'authorization response'
  // A response whose iss is another server's is a mix-up (RFC 9207 §2.4).
  const forged = new URL(callback.href)
  forged.searchParams.set('iss', 'https://attacker.example')
  await expectFailure('authorization response with a foreign iss', async () =>
    oauth.validateAuthResponse(as, client, forged, state), oauth.INVALID_RESPONSE)
  const params = oauth.validateAuthResponse(as, client, callback, state)
  pass('authorization response', { iss: callback.searchParams.get('iss') })

  step = 'token'
  const tokens = await oauth.processAuthorizationCodeResponse(as, client,
    await oauth.authorizationCodeGrantRequest(as, client, clientAuth, params, redirectUri, codeVerifier, insecure))
  check(tokens.token_type === 'bearer', `token_type ${tokens.token_type}`)
  check(typeof tokens.refresh_token === 'string', 'no refresh token')
  check(tokens.scope === scope, `scope ${tokens.scope}, want ${scope}`)
  pass('token', { expires_in: tokens.expires_in, scope: tokens.scope })

  const introspect = async (token) => oauth.processIntrospectionResponse(as, client,
    await oauth.introspectionRequest(as, client, clientAuth, token, insecure))

  step = 'introspect access token'
  const info = await introspect(tokens.access_token)
  const now = Math.floor(Date.now() / 1000)
  check(info.active === true, `active ${info.active}`)
  check(info.client_id === client.client_id, `client_id ${info.client_id}`)
  check(info.scope === scope, `scope ${info.scope}`)
  check(info.token_type === 'Bearer', `token_type ${info.token_type}`)
  check(info.iss === as.issuer, `iss ${info.iss}`)
  check(typeof info.sub === 'string' && info.sub !== '', 'no sub')
  check(Math.abs(info.exp - (now + tokens.expires_in)) <= 5, `exp ${info.exp}, want about now + ${tokens.expires_in}`)
  pass('introspect access token', { sub: info.sub, scope: info.scope })

  step = 'introspect refresh token'
  const rinfo = await introspect(tokens.refresh_token)
  check(rinfo.active === true && rinfo.sub === info.sub && rinfo.client_id === client.client_id, JSON.stringify(rinfo))
  check(rinfo.token_type === undefined, `refresh token_type ${rinfo.token_type}`)
  pass('introspect refresh token')

  step = 'userinfo'
  // processUserInfoResponse checks sub against the one introspection gave.
  const user = await oauth.processUserInfoResponse(as, client, info.sub,
    await oauth.userInfoRequest(as, client, tokens.access_token, insecure))
  pass('userinfo', { sub: user.sub, name: user.name })

  step = 'introspect with a wrong secret'
  const wrongAuth = authStyle === 'basic' ? oauth.ClientSecretBasic('wrong') : oauth.ClientSecretPost('wrong')
  try {
    await oauth.processIntrospectionResponse(as, client,
      await oauth.introspectionRequest(as, client, wrongAuth, tokens.access_token, insecure))
    throw new Error('a wrong secret was accepted')
  } catch (err) {
    // With Basic the 401 carries a Basic challenge, which oauth4webapi
    // reports as such; with post it is the RFC 6749 §5.2 body.
    const ok = authStyle === 'basic'
      ? err.code === oauth.WWW_AUTHENTICATE_CHALLENGE && err.status === 401 && err.cause?.[0]?.scheme === 'basic'
      : err.code === oauth.RESPONSE_BODY_ERROR && err.status === 401 && err.error === 'invalid_client'
    check(ok, `wrong secret: ${err.code} ${err.status} ${err.error ?? ''} ${err.message}`)
    pass('introspect with a wrong secret')
  }

  step = 'refresh'
  const refreshed = await oauth.processRefreshTokenResponse(as, client,
    await oauth.refreshTokenGrantRequest(as, client, clientAuth, tokens.refresh_token, insecure))
  check(refreshed.access_token !== tokens.access_token && typeof refreshed.refresh_token === 'string', 'refresh did not rotate')
  const old = await introspect(tokens.access_token)
  check(JSON.stringify(old) === '{"active":false}', `rotated-out access token: ${JSON.stringify(old)}`)
  check((await introspect(refreshed.access_token)).active === true, 'new access token inactive')
  pass('refresh')

  step = 'revoke'
  await oauth.processRevocationResponse(
    await oauth.revocationRequest(as, client, clientAuth, refreshed.access_token, insecure))
  pass('revoke')

  step = 'introspect after revocation'
  for (const [name, token] of [['access', refreshed.access_token], ['refresh', refreshed.refresh_token]]) {
    const after = await introspect(token)
    check(JSON.stringify(after) === '{"active":false}', `${name} token after revocation: ${JSON.stringify(after)}`)
  }
  pass('introspect after revocation')
  console.log('OK')
}

main().then(() => process.exit(0), (err) => {
  // Not err.cause: for some errors it holds a token response.
  const oauthError = err.error === undefined ? '' : ` (${err.status} ${err.error}: ${err.error_description})`
  console.log(`FAIL ${step}: ${err.code ?? err.name}: ${err.message}${oauthError}`)
  process.exit(1)
})
