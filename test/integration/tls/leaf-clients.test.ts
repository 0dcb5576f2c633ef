// Leaves minted by LeafMinter against real TLS clients that trust only the
// sandbox CA: curl (OpenSSL), Python's ssl with X.509 strict checks and
// requests, Node's tls, and Java (through the sandbox trust store). Each
// completes a handshake for the name the leaf was minted for and fails for
// another name. Everything runs on 127.0.0.1.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import tls from 'node:tls'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createCertificateAuthority, loadCertificateAuthority } from '../../../src/tls/ca.js'
import { LeafMinter } from '../../../src/tls/leaf.js'
import { sandboxTrust, TRUST_FILES } from '../../../src/tls/sandbox-trust.js'
import { TRUST_STORE_PASSWORD } from '../../../src/tls/jks.js'
import { curl, PYTHON, run } from '../../helpers/run.js'

const NAME = 'api.example.test'
const OTHER = 'other.example.test'

let dir: string
let caFile: string
let minter: LeafMinter
/** Mints a leaf for whatever SNI the client sends (as the interception stage will). */
let sniServer: tls.Server
/** Always presents the leaf for NAME, whatever the client asks for. */
let fixedServer: tls.Server
let sniPort: number
let fixedPort: number

function listen(server: tls.Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)),
  )
}

function answer(socket: tls.TLSSocket): void {
  socket.once('data', () => {
    const body = `hello ${socket.servername || 'no-sni'}`
    socket.end(
      `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    )
  })
  socket.on('error', () => undefined)
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'isorun-leaf-'))
  const material = await createCertificateAuthority({ commonName: 'isorun test sandbox' })
  caFile = join(dir, 'ca.pem')
  writeFileSync(caFile, material.cert)
  minter = new LeafMinter(loadCertificateAuthority(material))
  sniServer = tls.createServer(
    {
      SNICallback: (name, cb) => {
        minter.leafFor(name).then(
          (leaf) => cb(null, leaf.context),
          (err: Error) => cb(err),
        )
      },
    },
    answer,
  )
  const fixed = await minter.leafFor(NAME)
  fixedServer = tls.createServer({ key: fixed.key, cert: fixed.cert }, answer)
  sniPort = await listen(sniServer)
  fixedPort = await listen(fixedServer)
  const trust = sandboxTrust(material.cert, undefined)
  for (const [file, content] of Object.entries(trust.files)) writeFileSync(join(dir, file), content)
})

afterAll(() => {
  sniServer?.close()
  fixedServer?.close()
  rmSync(dir, { recursive: true, force: true })
})

describe('curl (OpenSSL)', () => {
  it('completes a handshake for the minted name', async () => {
    const r = await curl([
      '--cacert',
      caFile,
      '--resolve',
      `${NAME}:${sniPort}:127.0.0.1`,
      `https://${NAME}:${sniPort}/`,
    ])
    expect(r.stderr).toBe('')
    expect(r.stdout).toBe(`hello ${NAME}`)
  })

  it('refuses the leaf for another name', async () => {
    const r = await curl([
      '--cacert',
      caFile,
      '--resolve',
      `${OTHER}:${fixedPort}:127.0.0.1`,
      `https://${OTHER}:${fixedPort}/`,
    ])
    expect(r.code).toBe(60) // peer certificate cannot be authenticated
    expect(r.stderr).toMatch(/no alternative certificate subject name matches|does not match/i)
  })

  it('completes a handshake for an IP address (iPAddress SAN)', async () => {
    // Clients send no SNI for an IP literal, so this server presents the IP's leaf itself.
    const leaf = await minter.leafFor('127.0.0.1')
    const server = tls.createServer({ key: leaf.key, cert: leaf.cert }, answer)
    const port = await listen(server)
    try {
      const ok = await curl(['--cacert', caFile, `https://127.0.0.1:${port}/`])
      expect(ok.stderr).toBe('')
      expect(ok.stdout).toBe('hello no-sni')
    } finally {
      server.close()
    }
  })
})

const PYTHON_SSL = `
import socket, ssl, sys
cafile, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=cafile)
ctx.verify_flags |= ssl.VERIFY_X509_STRICT
try:
    with socket.create_connection(('127.0.0.1', port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            s.sendall(b'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')
            print('ok', s.recv(200).decode().split('\\r\\n\\r\\n')[1])
except ssl.SSLCertVerificationError as e:
    print('verify-failed', e.verify_message)
`

describe('Python', () => {
  it('ssl with VERIFY_X509_STRICT accepts the minted name and refuses another', async () => {
    const good = await run(PYTHON, ['-c', PYTHON_SSL, caFile, NAME, String(sniPort)])
    expect(good.stderr).toBe('')
    expect(good.stdout.trim()).toBe(`ok hello ${NAME}`)
    const bad = await run(PYTHON, ['-c', PYTHON_SSL, caFile, OTHER, String(fixedPort)])
    expect(bad.stdout).toMatch(/^verify-failed .*mismatch/i)
  })

  it('requests verifies an IP leaf against the CA alone', async () => {
    const leaf = await minter.leafFor('127.0.0.1')
    const server = tls.createServer({ key: leaf.key, cert: leaf.cert }, answer)
    const port = await listen(server)
    try {
      const script = `import requests, sys\nr = requests.get(sys.argv[2], verify=sys.argv[1], timeout=10)\nprint(r.status_code, r.text)`
      const r = await run(PYTHON, ['-c', script, caFile, `https://127.0.0.1:${port}/`], {
        env: { PATH: process.env.PATH ?? '' },
      })
      expect(r.stderr).toBe('')
      expect(r.stdout.trim()).toBe('200 hello no-sni')
    } finally {
      server.close()
    }
  })
})

function nodeHandshake(port: number, servername: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      servername,
      ca: [minter.ca.cert],
    })
    socket.once('secureConnect', () => {
      socket.end()
      resolve('authorized')
    })
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
    socket.setTimeout(10_000, () => reject(new Error('handshake timed out')))
  })
}

describe('Node tls', () => {
  it('authorizes the minted name and refuses another', async () => {
    expect(await nodeHandshake(sniPort, NAME)).toBe('authorized')
    expect(await nodeHandshake(fixedPort, OTHER)).toBe('ERR_TLS_CERT_ALTNAME_INVALID')
  })
})

const JAVA_CLIENT = `
import javax.net.ssl.*;
import java.net.Socket;
import java.util.List;
public class Handshake {
  public static void main(String[] a) throws Exception {
    SSLSocketFactory f = (SSLSocketFactory) SSLSocketFactory.getDefault();
    Socket raw = new Socket("127.0.0.1", Integer.parseInt(a[1]));
    SSLSocket s = (SSLSocket) f.createSocket(raw, a[0], Integer.parseInt(a[1]), true);
    SSLParameters p = s.getSSLParameters();
    p.setEndpointIdentificationAlgorithm("HTTPS");
    p.setServerNames(List.of(new SNIHostName(a[0])));
    s.setSSLParameters(p);
    try { s.startHandshake(); System.out.println("ok"); }
    catch (SSLHandshakeException e) { System.out.println("refused " + e.getMessage()); }
    s.close();
  }
}
`

describe('Java (the sandbox trust store, as JAVA_TOOL_OPTIONS sets it)', () => {
  it('accepts the minted name and refuses another', async (ctx) => {
    const java = await run('java', ['-version'])
    if (java.code !== 0) {
      ctx.skip('java is not installed (apt-get install default-jre-headless)')
      return
    }
    const source = join(dir, 'Handshake.java')
    writeFileSync(source, JAVA_CLIENT)
    const store = join(dir, TRUST_FILES.javaTrustStore)
    const env = {
      PATH: process.env.PATH ?? '',
      JAVA_TOOL_OPTIONS: `-Djavax.net.ssl.trustStore=${store} -Djavax.net.ssl.trustStoreType=JKS -Djavax.net.ssl.trustStorePassword=${TRUST_STORE_PASSWORD}`,
    }
    const good = await run('java', [source, NAME, String(sniPort)], { env, timeoutMs: 60_000 })
    expect(good.stdout.trim()).toBe('ok')
    const bad = await run('java', [source, OTHER, String(fixedPort)], { env, timeoutMs: 60_000 })
    expect(bad.stdout).toMatch(
      /^refused .*No subject alternative DNS name matching other\.example\.test/,
    )
  })
})
