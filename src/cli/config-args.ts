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

export function configHelp(): string {
  return CONFIG_KEYS.map((key) => {
    const prop = ConfigSchema.properties[key] as { default: unknown; description?: string };
    const flag = (isBooleanKey(key) ? `${flagName(key)}, --no-${flagName(key).slice(2)}` : `${flagName(key)} <value>`).padEnd(34);
    return `  ${flag}${prop.description ?? ''} [env ${envName(key)}, default ${JSON.stringify(prop.default)}]`;
  }).join('\n');
}

export interface ParsedCommand {
  config: Config;
  help: boolean;
  positionals: string[];
  /** Command-specific options that are not config keys. */
  extra: Record<string, string | boolean | undefined>;
}

/**
 * Parses a command line into a validated Config: defaults < --config file (or
 * SIGHTLINE_CONFIG) < SIGHTLINE_* environment < flags.
 */
export function parseCommand(
  argv: string[],
  extraOptions: NonNullable<ParseArgsConfig['options']> = {},
  env: NodeJS.ProcessEnv = process.env,
): ParsedCommand {
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
  if (help) return { config: loadConfig({}), help, positionals, extra };
  const configPath = (values.config as string | undefined) ?? env.SIGHTLINE_CONFIG;
  const file = configPath ? readConfigFile(configPath) : undefined;
  return { config: loadConfig({ file, env, flags }), help, positionals, extra };
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
