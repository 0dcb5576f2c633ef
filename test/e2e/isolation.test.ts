// What a sandbox can reach: its proxy, and through it only what the policy
// allows. Every target here is a container these tests made; the real
// 169.254.169.254 is never dialled (its stand-in sits on a network we create,
// attached to the proxy, so a failed defence would reach the stand-in).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Sandbox } from 'isorun'
import { docker, run } from './setup/sh.js'
import {
  client,
  e2e,
  proxyContainer,
  proxyEgressAddress,
  runnerAddress,
  skipReason,
  standinRequests,
  withSandbox,
} from './helpers.js'

const PIP_ENV = { PIP_BREAK_SYSTEM_PACKAGES: '1', PIP_DISABLE_PIP_VERSION_CHECK: '1' }

describe.skipIf(skipReason !== undefined)('sandbox isolation', () => {
  let sbx: Sandbox
  let other: Sandbox
  beforeAll(async () => {
    sbx = await client().create({
      image: e2e.sandboxImage,
      networkProfile: 'claude-code',
      env: PIP_ENV,
    })
    other = await client().create({ image: e2e.sandboxImage, networkProfile: 'unrestricted' })
  })
  afterAll(async () => {
    await sbx?.destroy()
    await other?.destroy()
  })

  it('reaches an allowed host through its proxy (so the refusals below are not dead targets)', async () => {
    const r = await sbx.exec('curl -sS -m 5 http://pypi.org/hello')
    expect(r.stdout).toContain('hello from the stand-in for pypi.org')
  })

  it('has no route to any address directly', async () => {
    // The stand-in answers through the proxy (above) but not directly.
    const direct = await sbx.exec(`curl --noproxy '*' -sS -m 3 http://${e2e.standinIp}/hello`)
    expect(direct.exitCode).not.toBe(0)
    const routes = await sbx.exec('ip -4 route; ip -4 addr show scope global')
    // One interface, on the sandbox network only.
    expect(routes.stdout.match(/inet /g)?.length).toBe(1)
    expect(routes.stdout).toContain(sbx.info.proxyAddress.replace(/\.\d+$/, '.'))
  })

  it('cannot reach other sandboxes or their proxies, directly or through its proxy', async () => {
    const otherProxy = other.info.proxyAddress
    const otherIp = await docker(
      'inspect',
      '-f',
      `{{(index .NetworkSettings.Networks "isorun-sbx-${other.id}").IPAddress}}`,
      `isorun-sbx-${other.id}`,
    )
    for (const target of [`http://${otherProxy}:3128/`, `http://${otherIp}:8000/`]) {
      const direct = await sbx.exec(`curl --noproxy '*' -sS -m 3 ${target}`)
      expect(direct.exitCode, `direct ${target}`).not.toBe(0)
      const viaProxy = await sbx.exec(`curl -sS -m 3 -o /dev/null -w '%{http_code}' ${target}`)
      expect(viaProxy.stdout, `via proxy ${target}`).toBe('403')
    }
    const socks = await sbx.exec(
      `curl -sS -m 3 -x socks5h://${sbx.info.proxyAddress}:1080 http://${otherProxy}:3128/`,
    )
    expect(socks.exitCode).toBe(97) // SOCKS refusal: connection not allowed by ruleset
    const events = await sbx.networkEvents({ action: 'deny' })
    expect(events).toContainEqual(
      expect.objectContaining({ host: otherProxy, reason: 'not-in-allow-list' }),
    )
  })

  it('cannot reach the runner API or any proxy admin port', async () => {
    const runner = await runnerAddress()
    const admin = await proxyEgressAddress(sbx)
    // Both are reachable on the egress network, e.g. from the proxy itself: the refusals are the sandbox's.
    const fromProxy = await run('docker', [
      'exec',
      proxyContainer(sbx),
      'node',
      '-e',
      `fetch('http://${runner}:8080/healthz').then(r=>console.log(r.status))`,
    ])
    expect(fromProxy.stdout.trim()).toBe('200')
    for (const target of [`http://${runner}:8080/healthz`, `http://${admin}:9090/healthz`]) {
      expect(
        (await sbx.exec(`curl --noproxy '*' -sS -m 3 ${target}`)).exitCode,
        `direct ${target}`,
      ).not.toBe(0)
      expect(
        (await sbx.exec(`curl -sS -m 3 -o /dev/null -w '%{http_code}' ${target}`)).stdout,
        `via proxy ${target}`,
      ).toBe('403')
    }
    // The admin API is not on the sandbox-facing address at all.
    const onSandboxSide = await sbx.exec(
      `curl --noproxy '*' -sS -m 3 http://${sbx.info.proxyAddress}:9090/healthz`,
    )
    expect(onSandboxSide.exitCode).toBe(7) // connection refused
    // Even an unrestricted sandbox cannot use its proxy to reach them: they are private addresses.
    const unrestricted = await other.exec(
      `curl -sS -m 3 -o /dev/null -w '%{http_code}' http://${runner}:8080/healthz`,
    )
    expect(unrestricted.stdout).toBe('403')
    expect(await other.networkEvents({ action: 'deny' })).toContainEqual(
      expect.objectContaining({ host: runner, reason: 'special-address' }),
    )
  })

  it('cannot reach a link-local metadata address (against a stand-in on a network we made)', async () => {
    const net = 'isorun-e2e-linklocal'
    const metadata = 'isorun-e2e-metadata'
    await run('docker', ['rm', '-f', metadata], { check: false })
    await run('docker', ['network', 'rm', net], { check: false })
    await docker(
      'network',
      'create',
      '--subnet',
      '169.254.169.0/24',
      '--gateway',
      '169.254.169.1',
      '-o',
      'com.docker.network.bridge.inhibit_ipv4=true',
      '--label',
      'isorun-e2e=linklocal',
      net,
    )
    try {
      await docker(
        'run',
        '-d',
        '--name',
        metadata,
        '--network',
        net,
        '--ip',
        '169.254.169.254',
        'isorun-ci/node:20',
        'node',
        '-e',
        "require('http').createServer((q,s)=>{console.log('HIT '+q.url);s.end('stand-in metadata')}).listen(80)",
      )
      await docker('network', 'connect', net, proxyContainer(other))
      // The proxy of an unrestricted sandbox can now reach the stand-in: only the policy stands in the way.
      const reachable = await run('docker', [
        'exec',
        proxyContainer(other),
        'node',
        '-e',
        "fetch('http://169.254.169.254/').then(r=>r.text()).then(console.log)",
      ])
      expect(reachable.stdout).toContain('stand-in metadata')
      const before = (await run('docker', ['logs', metadata])).stdout
        .split('\n')
        .filter((l) => l.startsWith('HIT')).length
      for (const url of [
        'http://169.254.169.254/latest/meta-data/',
        'http://2852039166/',
        'http://0xa9fea9fe/',
        'http://[::ffff:a9fe:a9fe]/',
        'http://169.254.43518/',
      ]) {
        const r = await other.exec(`curl -g -sS -m 3 -o /dev/null -w '%{http_code}' '${url}'`)
        expect(r.stdout, url).toBe('403')
      }
      const socks = await other.exec(
        'curl -sS -m 3 --socks5-hostname $(echo $ALL_PROXY | sed s,socks5h://,,) http://169.254.169.254/',
      )
      expect(socks.exitCode).toBe(97)
      const after = (await run('docker', ['logs', metadata])).stdout
        .split('\n')
        .filter((l) => l.startsWith('HIT')).length
      expect(after - before).toBe(0)
      const denied = await other.networkEvents({ action: 'deny' })
      expect(denied).toContainEqual(
        expect.objectContaining({ host: '169.254.169.254', reason: 'special-address' }),
      )
    } finally {
      await run('docker', ['network', 'disconnect', '-f', net, proxyContainer(other)], {
        check: false,
      })
      await run('docker', ['rm', '-f', metadata], { check: false })
      await run('docker', ['network', 'rm', net], { check: false })
    }
  })

  it('a program that ignores the proxy variables reaches an allowed host through DNS steering', async () => {
    const https = await sbx.exec(`curl --noproxy '*' -sS -m 5 https://pypi.org/simple/`)
    expect(https.stdout).toContain('isorun-e2e-demo')
    const plain = await sbx.exec(`curl --noproxy '*' -sS -m 5 http://files.pythonhosted.org/hello`)
    expect(plain.stdout).toContain('stand-in for files.pythonhosted.org')
    // Python's standard library with no proxy settings at all.
    const py = await sbx.exec([
      'env',
      '-i',
      'PATH=/usr/bin:/bin',
      'python3',
      '-c',
      "import urllib.request as u; print(u.urlopen('https://pypi.org/simple/', timeout=5).status)",
    ])
    expect(py.stdout.trim()).toBe('200')
    const events = await sbx.networkEvents({ action: 'allow' })
    expect(events).toContainEqual(
      expect.objectContaining({ protocol: 'tls', host: 'pypi.org', sni: 'pypi.org' }),
    )
    expect(events).toContainEqual(
      expect.objectContaining({ protocol: 'http', host: 'files.pythonhosted.org', path: '/hello' }),
    )
    expect(events).toContainEqual(
      expect.objectContaining({ protocol: 'dns', host: 'pypi.org', action: 'allow' }),
    )
    const requests = await standinRequests()
    expect(requests).toContainEqual(
      expect.objectContaining({ host: 'files.pythonhosted.org', url: '/hello' }),
    )
  })

  it('is refused for a blocked host, whose DNS query is refused by the proxy and goes nowhere else', async () => {
    const r = await sbx.exec(`curl --noproxy '*' -sS -m 5 https://random-site.com`)
    expect(r.exitCode).toBe(6) // could not resolve host
    const dig = await sbx.exec(
      `dig +tries=1 +time=3 random-site.com A; dig +tries=1 +time=3 @${sbx.info.proxyAddress} random-site.com A`,
    )
    expect(dig.stdout.match(/status: REFUSED/g)?.length).toBe(2)
    const allowed = await sbx.exec(`dig +short @${sbx.info.proxyAddress} pypi.org A`)
    expect(allowed.stdout.trim()).toBe(sbx.info.proxyAddress)
    const txt = await sbx.exec(`dig +tries=1 +time=3 @${sbx.info.proxyAddress} pypi.org TXT`)
    expect(txt.stdout).toContain('status: REFUSED')
    // The only resolver the sandbox has is Docker's in-container stub, which forwards to the proxy alone.
    const resolv = await docker('inspect', '-f', '{{json .HostConfig.Dns}}', `isorun-sbx-${sbx.id}`)
    expect(JSON.parse(resolv)).toEqual([sbx.info.proxyAddress])
    const events = await sbx.networkEvents({ action: 'deny' })
    expect(events).toContainEqual(
      expect.objectContaining({ protocol: 'dns', host: 'random-site.com', qtype: 'A' }),
    )
  })

  it('runs without added capabilities, with no-new-privileges and resource limits', async () => {
    const name = `isorun-sbx-${sbx.id}`
    const host = JSON.parse(await docker('inspect', '-f', '{{json .HostConfig}}', name)) as Record<
      string,
      unknown
    >
    expect(host.CapAdd ?? []).toEqual([])
    expect(host.CapDrop).toEqual(expect.arrayContaining(['NET_RAW']))
    expect(host.SecurityOpt).toContain('no-new-privileges:true')
    expect(host.Privileged).toBe(false)
    expect(host.Memory).toBeGreaterThan(0)
    expect(host.NanoCpus).toBeGreaterThan(0)
    expect(host.PidsLimit).toBeGreaterThan(0)
    const status = await sbx.exec('grep -E "^(CapEff|NoNewPrivs)" /proc/self/status')
    expect(status.stdout).toMatch(/NoNewPrivs:\s+1/)
    // NET_RAW (bit 13) is gone: no forged packets towards the proxy's other addresses.
    const capEff = BigInt(`0x${/CapEff:\s+([0-9a-f]+)/.exec(status.stdout)?.[1] ?? '0'}`)
    expect(capEff & (1n << 13n)).toBe(0n)
    for (const env of [
      'HTTP_PROXY',
      'HTTPS_PROXY',
      'ALL_PROXY',
      'NO_PROXY',
      'http_proxy',
      'https_proxy',
      'all_proxy',
      'no_proxy',
    ]) {
      expect((await sbx.exec(`printenv ${env}`)).stdout.trim(), env).not.toBe('')
    }
    expect((await sbx.exec('printenv ALL_PROXY')).stdout).toContain('socks5h://')
    // IPv4 only: no IPv6 address (link-local included) through which to reach the host's bridge.
    const v6 = await sbx.exec('cat /proc/sys/net/ipv6/conf/all/disable_ipv6; ip -6 addr show')
    expect(v6.stdout.trim()).toBe('1')
  })

  it('has a proxy that runs the bundled sidecar program, not the full CLI', async () => {
    // Every command line in the proxy container (docker-init, then node), NULs as spaces.
    const commands = await docker(
      'exec',
      proxyContainer(sbx),
      'sh',
      '-c',
      'for f in /proc/[0-9]*/cmdline; do tr "\\0" " " <"$f"; echo; done',
    )
    expect(commands).toMatch(
      /^node (--\S+ )*\/app\/dist\/isorun-proxy\.mjs proxy --wait-for-policy /m,
    )
    expect(commands).not.toContain('cli/main.js')
  })
})

describe.skipIf(skipReason !== undefined)('sandbox isolation, more profiles', () => {
  it('openai cannot reach crates.io, which claude-code can', async () => {
    await withSandbox({ networkProfile: 'openai' }, async (s) => {
      const r = await s.exec(
        'curl -sS -m 3 -o /dev/null -w "%{http_code}" https://static.crates.io/x',
      )
      expect(r.exitCode).not.toBe(0)
      expect(await s.networkEvents({ action: 'deny' })).toContainEqual(
        expect.objectContaining({ host: 'static.crates.io' }),
      )
    })
  })
})
