// Opening the profile catalogue for CLI commands: the built-in profiles plus
// --profiles-dir directories (and ISORUN_PROFILES_DIR). Unlike the runner, the
// CLI refuses to work on a broken catalogue, so an operator sees every problem
// at once, as one line each.

import { delimiter } from 'node:path'
import { ProfileCatalogue } from '../profiles/index.js'
import { UsageError } from './errors.js'

export function profileDirsFrom(
  flagDirs: readonly string[] | undefined,
  env = process.env,
): string[] {
  const fromEnv = (env.ISORUN_PROFILES_DIR ?? '').split(delimiter).filter((d) => d !== '')
  return [...fromEnv, ...(flagDirs ?? [])]
}

export function openCatalogue(flagDirs: readonly string[] | undefined): ProfileCatalogue {
  const catalogue = new ProfileCatalogue({ dirs: profileDirsFrom(flagDirs) })
  const problems = catalogue.problems()
  if (problems.length > 0) {
    // One line per problem; each already says where and what to fix.
    throw new UsageError(problems.map((p) => p.message).join('\n'))
  }
  return catalogue
}

export function unknownProfile(name: string, catalogue: ProfileCatalogue): UsageError {
  return new UsageError(
    `unknown profile "${name}"`,
    `known profiles: ${catalogue.names().join(', ')}`,
  )
}
