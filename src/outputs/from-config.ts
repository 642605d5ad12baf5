import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Config } from '../config/schema.js';
import { storeUrl } from '../config/locations.js';
import type { LineList } from '../protocol/lines.js';
import type { OutputContext } from './context.js';
import { eventFilter } from './filter.js';
import { OutputHub, type ConfiguredOutput } from './hub.js';
import { outputMetrics, zeroOutputSeries } from './metrics.js';
import { createModbusOutput } from './modbus/index.js';
import { createMqttOutput } from './mqtt/index.js';
import { OutboxTables } from './outbox.js';
import { createWebhookOutput } from './webhook/index.js';

export interface OutputsDeps {
  logger: Logger;
  registry: Registry;
  lines: () => Promise<LineList>;
}

/** The outputs a config turns on (none by default), in a hub; the outbox tables are opened only when one needs them. */
export async function outputsFromConfig(config: Config, deps: OutputsDeps): Promise<OutputHub> {
  const metrics = outputMetrics(deps.registry);
  let tables: OutboxTables | undefined;
  const ctx: OutputContext = {
    config,
    logger: deps.logger,
    metrics,
    lines: deps.lines,
    instance: `${hostname()}-${process.pid}`,
    outbox(name, max) {
      tables ??= new OutboxTables(storeUrl(config), config.store_schema ? { schema: config.store_schema } : {});
      return tables.outbox(name, { max, deadMax: config.output_dead_letters_max });
    },
  };
  const all = 'ok,ng';
  const outputs: ConfiguredOutput[] = [];
  if (config.mqtt_url) outputs.push({ output: createMqttOutput(ctx), filter: eventFilter(config.mqtt_lines, config.mqtt_verdicts) });
  if (config.webhook_urls.trim()) outputs.push({ output: createWebhookOutput(ctx), filter: eventFilter(config.webhook_lines, config.webhook_verdicts) });
  // The PLC servers show every line they know of (OPC UA) or are mapped (Modbus), whatever the verdict.
  if (config.opcua) {
    // node-opcua takes seconds to load and prints to stdout when it does: only a process that serves OPC UA loads it.
    const { createOpcuaOutput } = await import('./opcua/index.js');
    outputs.push({ output: createOpcuaOutput(ctx), filter: eventFilter('', all) });
  }
  if (config.modbus) outputs.push({ output: createModbusOutput(ctx), filter: eventFilter(config.modbus_lines, all) });
  for (const { output } of outputs) zeroOutputSeries(metrics, output.name);
  const hub = new OutputHub(outputs, { logger: deps.logger, metrics });
  const close = hub.close.bind(hub);
  // The outbox tables outlive the outputs that drain them, and close after them.
  hub.close = async () => {
    await close();
    await tables?.close();
  };
  return hub;
}
