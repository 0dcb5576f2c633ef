// A tiny pure-Python wheel for the stand-in package index, built with the
// standard library's zipfile (Debian's python3), RECORD hashes included.

import { join } from 'node:path'
import { run } from './sh.js'

export const DEMO_PACKAGE = {
  name: 'isorun-e2e-demo',
  module: 'isorun_e2e_demo',
  version: '1.0.0',
  value: 'isorun-e2e-ok',
}

const SCRIPT = `
import base64, hashlib, sys, zipfile
out, module, name, version, value = sys.argv[1:6]
dist = f"{module}-{version}.dist-info"
files = {
    f"{module}/__init__.py": f"VALUE = {value!r}\\n",
    f"{dist}/METADATA": f"Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\nSummary: isorun end-to-end test package\\n",
    f"{dist}/WHEEL": "Wheel-Version: 1.0\\nGenerator: isorun-e2e\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
}
record = []
for path, text in files.items():
    data = text.encode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record.append(f"{path},sha256={digest},{len(data)}")
record.append(f"{dist}/RECORD,,")
files[f"{dist}/RECORD"] = "\\n".join(record) + "\\n"
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for path, text in files.items():
        z.writestr(path, text)
`

/** Writes the wheel into `dir` and returns its file name. */
export async function buildDemoWheel(dir: string): Promise<string> {
  const file = `${DEMO_PACKAGE.module}-${DEMO_PACKAGE.version}-py3-none-any.whl`
  await run('/usr/bin/python3', [
    '-c',
    SCRIPT,
    join(dir, file),
    DEMO_PACKAGE.module,
    DEMO_PACKAGE.name,
    DEMO_PACKAGE.version,
    DEMO_PACKAGE.value,
  ])
  return file
}
