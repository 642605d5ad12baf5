import { readFileSync } from 'node:fs';
import type { IClientOptions } from 'mqtt';
import type { Config } from '../../config/schema.js';

/** Keepalive in seconds: a broker that vanished without closing the socket is noticed within about 1.5× this. */
const KEEPALIVE_S = 15;

/**
 * The mqtt.js options from the config. Throws for what no retry can fix (a URL
 * that does not parse, a CA file that cannot be read), so that `serve` stops
 * with the reason; a broker that is away is not checked here.
 */
export function clientOptions(config: Config, instance: string): IClientOptions {
  try {
    new URL(config.mqtt_url);
  } catch {
    throw new Error(`mqtt_url ${JSON.stringify(config.mqtt_url)} is not a URL`);
  }
  const options: IClientOptions = {
    clientId: config.mqtt_client_id || `sightline-${instance}`,
    keepalive: KEEPALIVE_S,
    connectTimeout: 10_000,
    protocolVersion: 4,
  };
  if (config.mqtt_username) options.username = config.mqtt_username;
  if (config.mqtt_password) options.password = config.mqtt_password;
  if (config.mqtt_ca_file) {
    try {
      options.ca = readFileSync(config.mqtt_ca_file);
    } catch (err) {
      throw new Error(`mqtt_ca_file ${config.mqtt_ca_file} cannot be read: ${(err as Error).message}`);
    }
  }
  return options;
}
