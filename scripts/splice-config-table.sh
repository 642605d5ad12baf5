#!/bin/sh
# Regenerates the config table in docs/configuration.md from the schema (the rows between
# the header and the first blank line after it, or the end of the file).
set -e
cd "$(dirname "$0")/.."
node --import tsx scripts/config-table.ts > /tmp/config-table.md
python3 - <<'PY'
path = 'docs/configuration.md'
doc = open(path).read()
start = doc.index('| key | environment | flag | default | what |')
end = doc.find('\n\n', start)
if end == -1:
    end = len(doc.rstrip('\n'))
doc = doc[:start] + open('/tmp/config-table.md').read().rstrip('\n') + doc[end:]
open(path, 'w').write(doc.rstrip('\n') + '\n')
PY
