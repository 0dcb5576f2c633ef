// Special-purpose address ranges, from the IANA IPv4 and IPv6 Special-Purpose
// Address Registries plus the multicast blocks. A name that resolves into one of
// these is refused unless the operator allows the range: this is what keeps a
// sandbox away from cloud metadata (169.254.169.254), the host's loopback and
// the private networks behind the proxy.
//
// Ranges that the registries mark globally reachable (AS112, AMT, PCP anycast)
// are left out on purpose: they are ordinary destinations.

import { CidrTable, parseCidr, type Cidr } from './cidr.js'
import { unwrapIP, type IP } from './ip.js'

export interface SpecialRange {
  readonly cidr: string
  /** Short name an operator can use to allow the whole group, e.g. `private`. */
  readonly group: SpecialGroup
  readonly description: string
}

export const SPECIAL_GROUPS = [
  'this-network',
  'loopback',
  'private',
  'cgnat',
  'link-local',
  'ietf-protocol',
  'documentation',
  'benchmarking',
  'reserved',
  'multicast',
  'broadcast',
  'unique-local',
  'discard',
  'translation',
  'teredo',
  'orchid',
  'srv6',
  'deprecated',
] as const

export type SpecialGroup = (typeof SPECIAL_GROUPS)[number]

export const SPECIAL_RANGES: readonly SpecialRange[] = [
  // IPv4 (RFC 6890 and successors)
  { cidr: '0.0.0.0/8', group: 'this-network', description: '"this network" (RFC 791)' },
  { cidr: '10.0.0.0/8', group: 'private', description: 'private network (RFC 1918)' },
  { cidr: '100.64.0.0/10', group: 'cgnat', description: 'shared address space / CGNAT (RFC 6598)' },
  { cidr: '127.0.0.0/8', group: 'loopback', description: 'loopback (RFC 1122)' },
  {
    cidr: '169.254.0.0/16',
    group: 'link-local',
    description: 'link-local, incl. cloud metadata 169.254.169.254 (RFC 3927)',
  },
  { cidr: '172.16.0.0/12', group: 'private', description: 'private network (RFC 1918)' },
  {
    cidr: '192.0.0.0/24',
    group: 'ietf-protocol',
    description: 'IETF protocol assignments (RFC 6890)',
  },
  {
    cidr: '192.0.2.0/24',
    group: 'documentation',
    description: 'documentation TEST-NET-1 (RFC 5737)',
  },
  {
    cidr: '192.88.99.0/24',
    group: 'deprecated',
    description: 'deprecated 6to4 relay anycast (RFC 7526)',
  },
  { cidr: '192.168.0.0/16', group: 'private', description: 'private network (RFC 1918)' },
  { cidr: '198.18.0.0/15', group: 'benchmarking', description: 'benchmarking (RFC 2544)' },
  {
    cidr: '198.51.100.0/24',
    group: 'documentation',
    description: 'documentation TEST-NET-2 (RFC 5737)',
  },
  {
    cidr: '203.0.113.0/24',
    group: 'documentation',
    description: 'documentation TEST-NET-3 (RFC 5737)',
  },
  { cidr: '224.0.0.0/4', group: 'multicast', description: 'multicast (RFC 5771)' },
  { cidr: '240.0.0.0/4', group: 'reserved', description: 'reserved for future use (RFC 1112)' },
  { cidr: '255.255.255.255/32', group: 'broadcast', description: 'limited broadcast (RFC 919)' },
  // IPv6 (RFC 6890 and successors). IPv4-mapped, NAT64 and 6to4 addresses are
  // unwrapped to their IPv4 address before classification.
  { cidr: '::/128', group: 'this-network', description: 'unspecified address (RFC 4291)' },
  { cidr: '::1/128', group: 'loopback', description: 'loopback (RFC 4291)' },
  {
    cidr: '64:ff9b:1::/48',
    group: 'translation',
    description: 'local-use IPv4/IPv6 translation (RFC 8215)',
  },
  { cidr: '100::/64', group: 'discard', description: 'discard-only (RFC 6666)' },
  { cidr: '2001::/32', group: 'teredo', description: 'Teredo tunnelling (RFC 4380)' },
  { cidr: '2001:2::/48', group: 'benchmarking', description: 'benchmarking (RFC 5180)' },
  { cidr: '2001:10::/28', group: 'orchid', description: 'deprecated ORCHID (RFC 4843)' },
  { cidr: '2001:db8::/32', group: 'documentation', description: 'documentation (RFC 3849)' },
  { cidr: '3fff::/20', group: 'documentation', description: 'documentation (RFC 9637)' },
  { cidr: '5f00::/16', group: 'srv6', description: 'segment routing SIDs (RFC 9602)' },
  { cidr: 'fc00::/7', group: 'unique-local', description: 'unique local addresses (RFC 4193)' },
  { cidr: 'fe80::/10', group: 'link-local', description: 'link-local (RFC 4291)' },
  { cidr: 'fec0::/10', group: 'deprecated', description: 'deprecated site-local (RFC 3879)' },
  { cidr: 'ff00::/8', group: 'multicast', description: 'multicast (RFC 4291)' },
]

const SPECIAL_TABLE = new CidrTable<SpecialRange>()
for (const range of SPECIAL_RANGES) SPECIAL_TABLE.add(parseCidr(range.cidr), range)

/** The most specific special-purpose range an address is in, or undefined for an ordinary address. */
export function classifyIP(ip: IP): SpecialRange | undefined {
  return SPECIAL_TABLE.first(unwrapIP(ip))
}

export function isSpecialGroup(name: string): name is SpecialGroup {
  return (SPECIAL_GROUPS as readonly string[]).includes(name)
}

/** The CIDR blocks of a named group, for operators who allow e.g. `private` at once. */
export function cidrsOfGroup(group: SpecialGroup): Cidr[] {
  return SPECIAL_RANGES.filter((r) => r.group === group).map((r) => parseCidr(r.cidr))
}
