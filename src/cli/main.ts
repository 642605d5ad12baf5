#!/usr/bin/env node
import { runServe } from './serve.js';
import { runEval } from './eval.js';
import { runWorker } from './worker.js';
import { runLogs } from './logs.js';
import { runSimulate } from './simulate.js';
import { runKeys } from './keys.js';
import { runExport } from './export.js';
import { runBackup, runRestore } from './backup.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT } from './config-args.js';

const HELP = `Usage: sightline <command> [options]

Commands:
  serve     serve the HTTP API (the embedded default)
  worker    consume async jobs (no HTTP)
  eval      measure a model's accuracy on a dataset through the serving pipeline
  logs      logs analyze FILE...: report and anomalies from Sightline's JSON logs
  simulate  camera simulator: N lines × F fps through the client SDK (ws, http or jobs)
  keys      API keys: keys create --name NAME --role ROLE[,ROLE], keys revoke NAME|ID, keys list
  export    reviewed results with their images as an Ultralytics dataset (for retraining and eval)
  backup    backup --out FILE: one archive of results, jobs, keys, snapshots and the model list; safe while serving
  restore   restore --in FILE [--force]: a backup into an empty data dir (checked before anything is written)

Run "sightline <command> --help" for the options of a command,
"sightline --version" for the version.
`;

function version(): string {
  return (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

const commands: Record<string, (argv: string[]) => Promise<number>> = {
  serve: runServe,
  eval: runEval,
  worker: runWorker,
  logs: runLogs,
  simulate: runSimulate,
  keys: runKeys,
  export: runExport,
  backup: runBackup,
  restore: runRestore,
};

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  if (command === '--version' || command === '-v' || command === 'version') {
    process.stdout.write(`sightline ${version()}\n`);
    return 0;
  }
  const run = commands[command];
  if (!run) {
    process.stderr.write(`sightline: unknown command "${command}"\n\n${HELP}`);
    return 2;
  }
  return run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    // Exit explicitly: a stop that timed out must not wait for the requests it gave up on.
    process.exit(code);
  },
  (err: Error) => {
    process.stderr.write(`sightline: ${err.stack ?? err.message}\n`);
    // Whatever the failed command had started (timers, sockets, a worker) must not keep it running.
    process.exit(1);
  },
);
