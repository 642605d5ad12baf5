import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigSchema, CONFIG_KEYS, type Config } from '../config/schema.js';
import { ConfigError, envName, flagName, loadConfig, readConfigFile } from '../config/load.js';

const isBooleanKey = (key: string) => (ConfigSchema.properties as Record<string, { type?: string }>)[key]?.type === 'boolean';

/** CLI options generated from the config schema: every key is a --flag; booleans also take --no-flag. */
function configOptions(): NonNullable<ParseArgsConfig['options']> {
  const options: NonNullable<ParseArgsConfig['options']> = {};
  for (const key of CONFIG_KEYS) {
    const name = flagName(key).slice(2);
    options[name] = { type: isBooleanKey(key) ? 'boolean' : 'string' };
    if (isBooleanKey(key)) options[`no-${name}`] = { type: 'boolean' };
  }
  return options;
}

/** An option list for --help: every description starts in one column, two spaces after the longest flag. */
export function formatOptions(rows: readonly (readonly [flag: string, description: string])[]): string {
  const width = Math.max(...rows.map(([flag]) => flag.length)) + 2;
  return rows.map(([flag, description]) => `  ${flag.padEnd(width)}${description}`.trimEnd()).join('\n');
}

/** Help rows for the config keys (all but `exclude`): flag, then description, environment variable and default. */
export function configOptionRows(exclude: readonly string[] = []): [string, string][] {
  return CONFIG_KEYS.filter((key) => !exclude.includes(key)).map((key) => {
    const prop = ConfigSchema.properties[key] as { default: unknown; description?: string };
    const flag = isBooleanKey(key) ? `--[no-]${flagName(key).slice(2)}` : `${flagName(key)} <value>`;
    return [flag, `${prop.description ?? ''} [env ${envName(key)}, default ${JSON.stringify(prop.default)}]`];
  });
}

/** The options part of serve's and worker's help: --config, the config keys, --help. */
export function configHelp(exclude: readonly string[] = []): string {
  return formatOptions([['--config <file>', 'JSON config file [env SIGHTLINE_CONFIG]'], ...configOptionRows(exclude), ['-h, --help', 'show this help']]);
}

export interface ParsedCommand {
  config: Config;
  help: boolean;
  positionals: string[];
  /** Command-specific options that are not config keys. */
  extra: Record<string, string | boolean | undefined>;
  /** Config keys given in the config file, the environment or a flag (the others are defaults). */
  explicit: ReadonlySet<string>;
}

/**
 * Parses a command line into a validated Config: defaults < --config file (or
 * SIGHTLINE_CONFIG) < SIGHTLINE_* environment < flags.
 */
export function parseCommand(argv: string[], extraOptions: NonNullable<ParseArgsConfig['options']> = {}, env: NodeJS.ProcessEnv = process.env): ParsedCommand {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { ...configOptions(), ...extraOptions, config: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  const { values, positionals } = parsed;
  const flags: Record<string, unknown> = {};
  const extra: ParsedCommand['extra'] = {};
  for (const [name, value] of Object.entries(values)) {
    const key = name.replaceAll('-', '_');
    if (key.startsWith('no_') && (CONFIG_KEYS as string[]).includes(key.slice(3)) && isBooleanKey(key.slice(3))) flags[key.slice(3)] = !value;
    else if ((CONFIG_KEYS as string[]).includes(key)) flags[key] = value;
    else if (name !== 'config' && name !== 'help') extra[name] = value as string | boolean | undefined;
  }
  const help = values.help === true;
  if (help) return { config: loadConfig({}), help, positionals, extra, explicit: new Set() };
  const configPath = (values.config as string | undefined) ?? env.SIGHTLINE_CONFIG;
  const file = configPath ? readConfigFile(configPath) : undefined;
  const config = loadConfig({ file, env, flags });
  const explicit = new Set([...Object.keys(file ?? {}), ...Object.keys(flags), ...CONFIG_KEYS.filter((key) => env[envName(key)] !== undefined)]);
  return { config, help, positionals, extra, explicit };
}

/**
 * parseCommand for a subcommand's entry point: a config error is printed with the
 * command's name and --help prints its help; both end the command with the exit
 * code returned instead of a ParsedCommand.
 */
export function parseCommandOrExit(
  command: string,
  help: string,
  argv: string[],
  extraOptions: NonNullable<ParseArgsConfig['options']> = {},
): ParsedCommand | number {
  let parsed: ParsedCommand;
  try {
    parsed = parseCommand(argv, extraOptions);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`sightline ${command}: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (parsed.help) {
    process.stdout.write(help);
    return 0;
  }
  return parsed;
}

/** The package's own folder (the checkout, or node_modules/sightline): src/cli or dist/cli is two levels down. */
export const PACKAGE_ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface ResolvedPaths {
  config: Config;
  /** Absolute model repository and data folder, and whether the models are the package's built-in ones. */
  modelsDir: string;
  dataDir: string;
  builtInModels: boolean;
}

/**
 * Resolves models_dir and data_dir against the working directory. Left at its default,
 * models_dir falls back to the package's built-in model repository when ./models does
 * not exist, so that `sightline serve` works from any folder; data_dir stays where it
 * is started (results belong to the user, not to the package).
 */
export function resolvePaths(parsed: Pick<ParsedCommand, 'config' | 'explicit'>, cwd = process.cwd()): ResolvedPaths {
  const { config } = parsed;
  let modelsDir = resolve(cwd, config.models_dir);
  let builtInModels = false;
  const packaged = join(PACKAGE_ROOT, 'models');
  if (!parsed.explicit.has('models_dir') && !existsSync(modelsDir) && existsSync(packaged)) {
    modelsDir = packaged;
    builtInModels = true;
  }
  const dataDir = resolve(cwd, config.data_dir);
  return { config: { ...config, models_dir: modelsDir, data_dir: dataDir }, modelsDir, dataDir, builtInModels };
}

/** Where the models and data are, for the start-up log and for people. */
export function describePaths(paths: ResolvedPaths, cwd = process.cwd()): string {
  const models = paths.builtInModels ? `${paths.modelsDir} (built-in: ${join(cwd, 'models')} does not exist)` : paths.modelsDir;
  return `models from ${models}; data in ${paths.dataDir}`;
}
