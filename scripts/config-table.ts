// Prints the config table of docs/configuration.md from the schema: `node --import tsx scripts/config-table.ts`
// (`sh scripts/splice-config-table.sh` writes it into the page).
import { CONFIG_KEYS, ConfigSchema } from '../src/config/schema.js';
import { envName, flagName } from '../src/config/load.js';

const rows = ['| key | environment | flag | default | what |', '| --- | --- | --- | --- | --- |'];
for (const key of CONFIG_KEYS) {
  const prop = ConfigSchema.properties[key] as { default: unknown; description?: string };
  const shown = typeof prop.default === 'string' && prop.default === '' ? '(empty)' : String(prop.default);
  rows.push(`| \`${key}\` | \`${envName(key)}\` | \`${flagName(key)}\` | \`${shown}\` | ${(prop.description ?? '').replace(/\|/g, '\\|')} |`);
}
process.stdout.write(rows.join('\n') + '\n');
