// Secrets on intercepted requests: the one place a flat header list (as the
// forwarder and the WebSocket relay write them) gets placeholders replaced by
// values, through substituteSecrets() (src/secrets/store.ts decides where).
// Called only for requests the proxy decrypted, with the checked host.

import type { ProxyContext } from '../context.js'

/** `headers` (`[name, value, …]`) with the secrets bound to `host` put in. */
export function withSecrets(ctx: ProxyContext, host: string, headers: string[]): string[] {
  const secrets = ctx.interception.secrets
  if (!secrets.hasSecretFor(host)) return headers
  const pairs: [string, string][] = []
  for (let i = 0; i + 1 < headers.length; i += 2)
    pairs.push([headers[i] as string, headers[i + 1] as string])
  return secrets.substituteSecrets(host, pairs).headers.flat()
}
