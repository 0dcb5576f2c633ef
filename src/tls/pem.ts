// PEM text: base64 of DER between BEGIN/END lines (RFC 7468).

export function pemEncode(label: string, der: Uint8Array): string {
  const lines =
    Buffer.from(der)
      .toString('base64')
      .match(/.{1,64}/g) ?? []
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`
}

const CERTIFICATE_BLOCK = /-----BEGIN CERTIFICATE-----([^-]*)-----END CERTIFICATE-----/g

/** Every certificate in a PEM bundle, as PEM blocks, in order; anything between them is skipped. */
export function pemCertificates(text: string): string[] {
  return [...text.matchAll(CERTIFICATE_BLOCK)].map((m) => `${m[0]}\n`)
}

/** The DER bytes of one PEM certificate block. */
export function pemToDer(block: string): Buffer {
  return Buffer.from(block.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64')
}
