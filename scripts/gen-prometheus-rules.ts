// Writes deploy/prometheus/rules/sightline.rules.yml from the in-process alert
// rules (src/alerts/rules.ts), so both stay one definition.
//   node --import tsx scripts/gen-prometheus-rules.ts          write the file
//   node --import tsx scripts/gen-prometheus-rules.ts --check  exit 1 when it is out of date
import { readFileSync, writeFileSync } from 'node:fs';
import { PROMETHEUS_RULES_PATH, renderPrometheusRules } from '../src/alerts/prometheus.js';

const wanted = renderPrometheusRules();
if (process.argv.includes('--check')) {
  let current = '';
  try {
    current = readFileSync(PROMETHEUS_RULES_PATH, 'utf8');
  } catch {
    // missing: out of date
  }
  if (current !== wanted) {
    console.error(`${PROMETHEUS_RULES_PATH} is out of date: run node --import tsx scripts/gen-prometheus-rules.ts`);
    process.exit(1);
  }
  console.log(`${PROMETHEUS_RULES_PATH} is up to date`);
} else {
  writeFileSync(PROMETHEUS_RULES_PATH, wanted);
  console.log(`wrote ${PROMETHEUS_RULES_PATH}`);
}
