// Sandbox networks get explicit subnets, carved from a configurable pool, so
// the runner knows its proxy's address (the second host) before anything starts.
// The sandbox container gets a fixed address too (the third host): with one
// left to Docker's IPAM, an engine restart that starts the sandbox first hands
// it the proxy's address, and the proxy then cannot start ("Address already in use").

import { formatIP, parseIPv4 } from '../policy/index.js'

export interface SandboxSubnet {
  /** `a.b.c.d/n` */
  readonly subnet: string
  /** Reserved for Docker's IPAM; the bridge itself gets no address (inhibit_ipv4). */
  readonly gateway: string
  /** The proxy's sandbox-facing address. */
  readonly proxy: string
  /** The sandbox container's address. */
  readonly sandbox: string
}

export class SubnetPool {
  private readonly base: number
  private readonly count: number

  constructor(
    pool: string,
    private readonly prefix: number,
  ) {
    const [addr, bits] = pool.split('/') as [string, string]
    const ip = parseIPv4(addr)
    const poolBits = Number(bits)
    if (!ip || !(poolBits >= 8 && poolBits <= prefix))
      throw new Error(`subnet pool ${pool} cannot hold /${prefix} subnets`)
    this.base = ip.value
    this.count = 2 ** (prefix - poolBits)
  }

  /** Every subnet of the pool not in `used`, in order. */
  *free(used: ReadonlySet<string>): Generator<SandboxSubnet> {
    const size = 2 ** (32 - this.prefix)
    for (let i = 0; i < this.count; i++) {
      const network = this.base + i * size
      const subnet = `${formatIP({ version: 4, value: network })}/${this.prefix}`
      if (used.has(subnet)) continue
      yield {
        subnet,
        gateway: formatIP({ version: 4, value: network + 1 }),
        proxy: formatIP({ version: 4, value: network + 2 }),
        sandbox: formatIP({ version: 4, value: network + 3 }),
      }
    }
  }
}
