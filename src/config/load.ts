import { readFileSync } from 'node:fs';
import { Value } from '@sinclair/typebox/value';
import { ConfigSchema, CONFIG_KEYS, type Config } from './schema.js';
import { parseVersionPolicies } from './version-policy.js';

export const ENV_PREFIX = 'SIGHTLINE_';

/**
 * SIGHTLINE_* variables that are not config keys: the config file path itself and
 * switches read by the test suite and CI.
 */
/** Read by other tools, not the server: the CLI's config file, the test switch, and the clients' (SDK, simulate, examples/) server address and key. */
const NON_CONFIG_ENV = new Set(['SIGHTLINE_CONFIG', 'SIGHTLINE_REQUIRE_SERVICES', 'SIGHTLINE_URL', 'SIGHTLINE_API_KEY']);
/** SIGHTLINE_TEST_* variables point the test suite at services; they are never config. */
const TEST_ENV_PREFIX = 'SIGHTLINE_TEST_';

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export interface ConfigSources {
  /** Parsed config file content (JSON object), lowest precedence after defaults. */
  file?: Record<string, unknown>;
  /** Process environment; only SIGHTLINE_* variables are read. */
  env?: NodeJS.ProcessEnv;
  /** Values from CLI flags, keyed by config key; highest precedence. */
  flags?: Record<string, unknown>;
}

export function envName(key: string): string {
  return ENV_PREFIX + key.toUpperCase();
}

export function flagName(key: string): string {
  return '--' + key.replaceAll('_', '-');
}

function fromEnv(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || NON_CONFIG_ENV.has(name) || name.startsWith(TEST_ENV_PREFIX) || value === undefined) continue;
    const key = name.slice(ENV_PREFIX.length).toLowerCase();
    if (!(CONFIG_KEYS as string[]).includes(key)) {
      throw new ConfigError(`unknown environment variable ${name} (no config key "${key}")`);
    }
    values[key] = value;
  }
  return values;
}

export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError(`config file ${path} must hold a JSON object`);
  }
  return parsed as Record<string, unknown>;
}

/**
 * Merges defaults < file < environment < flags and validates the result. Strings
 * from the environment and flags are converted to the schema's types; anything
 * that still does not fit, and any unknown key, is reported by name.
 */
export function loadConfig(sources: ConfigSources = {}): Config {
  const layers: [string, Record<string, unknown>][] = [
    ['config file', sources.file ?? {}],
    ['environment', fromEnv(sources.env ?? {})],
    ['command line', sources.flags ?? {}],
  ];
  const merged: Record<string, unknown> = {};
  for (const [origin, layer] of layers) {
    for (const [key, value] of Object.entries(layer)) {
      if (!(CONFIG_KEYS as string[]).includes(key)) {
        throw new ConfigError(`unknown config key "${key}" in ${origin}`);
      }
      if (value !== undefined) merged[key] = value;
    }
  }
  const candidate = Value.Convert(ConfigSchema, Value.Default(ConfigSchema, merged));
  const firstError = Value.Errors(ConfigSchema, candidate).First();
  if (firstError) {
    const key = firstError.path.replace(/^\//, '') || '(root)';
    throw new ConfigError(`invalid config value for "${key}": ${firstError.message} (got ${JSON.stringify(merged[key])})`);
  }
  const config = candidate as Config;
  // A certificate without its key (or a key without its certificate) would silently serve plain HTTP.
  if (Boolean(config.tls_cert_file) !== Boolean(config.tls_key_file)) {
    const [set, missing] = config.tls_cert_file ? ['tls_cert_file', 'tls_key_file'] : ['tls_key_file', 'tls_cert_file'];
    throw new ConfigError(`${set} is set but ${missing} is not: HTTPS needs both (or neither, for plain HTTP)`);
  }
  try {
    parseVersionPolicies(config.model_version_policy);
  } catch (err) {
    throw new ConfigError(`invalid config value for "model_version_policy": ${(err as Error).message}`);
  }
  return config;
}

/** The defaults alone, for tests and docs. */
export function defaultConfig(overrides: Partial<Config> = {}): Config {
  return loadConfig({ flags: overrides });
}
