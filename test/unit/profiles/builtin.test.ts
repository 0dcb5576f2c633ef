// The built-in profiles load cleanly and contain what the real tools need.
import { describe, expect, it } from 'vitest'
import { compilePolicy, decide, type EgressRequest } from '../../../src/policy/index.js'
import { policySpecOf, ProfileCatalogue } from '../../../src/profiles/index.js'

const catalogue = new ProfileCatalogue()

function allows(profile: string, host: string, port = 443): boolean {
  const resolved = catalogue.get(profile)
  if (!resolved) throw new Error(`no profile ${profile}`)
  const request: EgressRequest = { protocol: 'connect', host, port }
  return decide(request, compilePolicy(policySpecOf(resolved))).action === 'allow'
}

describe('built-in profiles', () => {
  it('load without problems', () => {
    expect(catalogue.problems()).toEqual([])
    const names = catalogue.names()
    for (const name of [
      'unrestricted',
      'locked-down',
      'claude-code',
      'openai',
      'anthropic-api',
      'openai-api',
      'pypi',
      'npm',
      'github',
      'crates-io',
      'package-registries',
      'huggingface',
      'google-ai',
    ]) {
      expect(names).toContain(name)
    }
  })

  it('every profile has a description', () => {
    for (const p of catalogue.list()) expect(p.description, p.name).not.toBe('')
  })

  it.each([
    ['claude-code', 'api.anthropic.com', true],
    ['claude-code', 'pypi.org', true],
    ['claude-code', 'files.pythonhosted.org', true], // pip downloads from here
    ['claude-code', 'registry.npmjs.org', true],
    ['claude-code', 'github.com', true],
    ['claude-code', 'codeload.github.com', true], // git archives, npm/pip GitHub dependencies
    ['claude-code', 'raw.githubusercontent.com', true],
    ['claude-code', 'index.crates.io', true], // cargo's sparse index
    ['claude-code', 'static.crates.io', true], // crate files
    ['claude-code', 'api.openai.com', false],
    ['claude-code', 'example.com', false],
    ['openai', 'api.openai.com', true],
    ['openai', 'pypi.org', true],
    ['openai', 'registry.npmjs.org', true],
    ['openai', 'github.com', true],
    ['openai', 'static.crates.io', false],
    ['openai', 'api.anthropic.com', false],
    ['package-registries', 'proxy.golang.org', true],
    ['package-registries', 'repo.maven.apache.org', true],
    ['package-registries', 'rubygems.org', true],
    ['package-registries', 'api.nuget.org', true],
    ['package-registries', 'deb.debian.org', true],
    ['package-registries', 'archive.ubuntu.com', true],
    ['package-registries', 'dl-cdn.alpinelinux.org', true],
    ['package-registries', 'api.anthropic.com', false],
    ['huggingface', 'huggingface.co', true],
    ['google-ai', 'generativelanguage.googleapis.com', true],
    ['locked-down', 'api.anthropic.com', false],
    ['unrestricted', 'example.com', true],
  ])('%s: %s allowed = %s', (profile, host, expected) => {
    expect(allows(profile, host)).toBe(expected)
  })

  it('github allows SSH (raw TCP) on port 22 only for github.com, through its tcp: rule', () => {
    expect(allows('github', 'github.com', 22)).toBe(true)
    expect(allows('github', 'api.github.com', 22)).toBe(false)
    const resolved = catalogue.get('github')
    if (!resolved) throw new Error('no github profile')
    const policy = compilePolicy(policySpecOf(resolved))
    const raw = (port: number) =>
      decide({ protocol: 'connect', host: 'github.com', port, payload: 'server-first' }, policy)
    expect(raw(22)).toMatchObject({ action: 'allow', rule: 'tcp:github.com:22' })
    // On 443 github.com carries TLS or HTTP, nothing unread.
    expect(raw(443)).toMatchObject({ action: 'deny', reason: 'unreadable-payload' })
  })

  it('unrestricted allows raw TCP anywhere, allow-all alone does not', () => {
    const resolved = catalogue.get('unrestricted')
    if (!resolved) throw new Error('no unrestricted profile')
    const request = {
      protocol: 'connect',
      host: 'db.example',
      port: 5432,
      payload: 'other',
    } as const
    expect(decide(request, compilePolicy(policySpecOf(resolved))).action).toBe('allow')
    const bare = compilePolicy({ name: 'bare', mode: 'allow-all', allow: [], deny: [] })
    expect(decide(request, bare)).toMatchObject({ action: 'deny', reason: 'unreadable-payload' })
  })

  it('compositions record where each rule came from', () => {
    const claude = catalogue.get('claude-code')
    expect(claude?.includes).toEqual(
      expect.arrayContaining(['anthropic-api', 'pypi', 'npm', 'github', 'crates-io']),
    )
    expect(claude?.allow).toContainEqual({ rule: 'files.pythonhosted.org', from: 'pypi' })
  })
})
