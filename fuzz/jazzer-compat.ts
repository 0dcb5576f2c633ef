// Makes jazzer.js's prebuilt native fuzzer load on this machine.
//
// @jazzer.js/fuzzer ships its libFuzzer-based addon prebuilt (the registry
// package has no sources to build from), linked against glibc 2.38 and GCC
// 13's libstdc++. Debian 12 has glibc 2.36 and GCC 12, so the loader refuses
// it ("version `GLIBC_2.38' not found"), although it uses only three functions
// from those versions. When that happens, this module
//   1. marks those two version requirements weak in the addon's ELF file (a
//      missing weak version is not fatal to the loader), and
//   2. builds fuzz/compat/glibc-compat.cc, which defines the three functions,
//      with g++ and preloads it into the fuzzer processes.
// On a machine where the addon loads as shipped, nothing is changed.

import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'

/** Symbol versions the prebuilt addon needs that older systems lack. */
const NEWER_VERSIONS = ['GLIBC_2.38', 'GLIBCXX_3.4.32']

const SHT_GNU_VERNEED = 0x6ffffffe
const VER_FLG_WEAK = 0x2

function addonPath(): string {
  const pkg = createRequire(import.meta.url).resolve('@jazzer.js/fuzzer/package.json')
  return join(dirname(pkg), 'prebuilds', `fuzzer-${process.platform}-${process.arch}.node`)
}

/**
 * Why the addon does not load with this environment, or undefined when it does.
 * Every symbol is bound at once (RTLD_NOW), so a missing one shows here and not
 * in the middle of a fuzzing run.
 */
function loadError(addon: string, env: NodeJS.ProcessEnv): string | undefined {
  const script = `process.dlopen({ exports: {} }, ${JSON.stringify(addon)}, require('os').constants.dlopen.RTLD_NOW)`
  const result = spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8' })
  return result.status === 0 ? undefined : result.stderr || `exit ${String(result.status)}`
}

/**
 * Sets VER_FLG_WEAK on the version requirements named `versions` in an ELF64
 * little-endian shared object (its .gnu.version_r section). Idempotent.
 */
export function markVersionsWeak(file: string, versions: readonly string[]): string[] {
  const elf = readFileSync(file)
  if (elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1)
    throw new Error(`${file} is not a 64-bit little-endian ELF file`)
  const sectionsAt = Number(elf.readBigUInt64LE(0x28))
  const sectionSize = elf.readUInt16LE(0x3a)
  const sectionCount = elf.readUInt16LE(0x3c)
  const section = (i: number) => {
    const at = sectionsAt + i * sectionSize
    return {
      type: elf.readUInt32LE(at + 4),
      offset: Number(elf.readBigUInt64LE(at + 0x18)),
      link: elf.readUInt32LE(at + 0x28),
    }
  }
  const marked: string[] = []
  for (let i = 0; i < sectionCount; i++) {
    const verneed = section(i)
    if (verneed.type !== SHT_GNU_VERNEED) continue
    const strings = section(verneed.link).offset
    const name = (at: number) => elf.toString('latin1', strings + at, elf.indexOf(0, strings + at))
    // Elf64_Verneed: vn_version u16, vn_cnt u16, vn_file u32, vn_aux u32, vn_next u32.
    for (let need = verneed.offset; ;) {
      const count = elf.readUInt16LE(need + 2)
      // Elf64_Vernaux: vna_hash u32, vna_flags u16, vna_other u16, vna_name u32, vna_next u32.
      for (let aux = need + elf.readUInt32LE(need + 8), n = 0; n < count; n++) {
        if (versions.includes(name(elf.readUInt32LE(aux + 8)))) {
          elf.writeUInt16LE(elf.readUInt16LE(aux + 4) | VER_FLG_WEAK, aux + 4)
          marked.push(name(elf.readUInt32LE(aux + 8)))
        }
        aux += elf.readUInt32LE(aux + 12)
      }
      const next = elf.readUInt32LE(need + 12)
      if (next === 0) break
      need += next
    }
  }
  writeFileSync(file, elf)
  return marked
}

function buildShim(source: string, cacheDir: string): string {
  const library = join(cacheDir, 'glibc-compat.so')
  if (existsSync(library) && statSync(library).mtimeMs >= statSync(source).mtimeMs) return library
  mkdirSync(cacheDir, { recursive: true })
  try {
    execFileSync('g++', ['-shared', '-fPIC', '-O2', '-o', library, source], { stdio: 'pipe' })
  } catch (err) {
    throw new Error(
      `building the glibc compatibility shim for jazzer.js failed (is g++ installed? apt-get install g++): ${String((err as { stderr?: Buffer }).stderr ?? err)}`,
    )
  }
  return library
}

/**
 * The environment fuzzer processes need: the current one, plus LD_PRELOAD of
 * the compatibility shim when the addon needs it. Throws with what to do when
 * the addon cannot be made to load.
 */
export function fuzzerEnvironment(root: string): NodeJS.ProcessEnv {
  const addon = addonPath()
  const env = { ...process.env }
  const error = loadError(addon, env)
  if (error === undefined) return env
  if (!NEWER_VERSIONS.some((v) => error.includes(v)))
    throw new Error(`jazzer.js's native fuzzer does not load: ${error.trim()}`)
  markVersionsWeak(addon, NEWER_VERSIONS)
  const shim = buildShim(
    join(root, 'fuzz', 'compat', 'glibc-compat.cc'),
    join(root, 'node_modules', '.cache', 'isorun-fuzz'),
  )
  env.LD_PRELOAD = [shim, env.LD_PRELOAD].filter(Boolean).join(' ')
  const still = loadError(addon, env)
  if (still !== undefined)
    throw new Error(
      `jazzer.js's native fuzzer does not load even with the glibc shim: ${still.trim()}`,
    )
  return env
}
