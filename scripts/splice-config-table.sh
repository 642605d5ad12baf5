#!/bin/sh
# Regenerates the README's config table from the schema (the rows between the header and the first blank line after it).
set -e
cd "$(dirname "$0")/.."
node --import tsx scripts/config-table.ts > /tmp/config-table.md
python3 - <<'PY'
import re
readme = open('README.md').read()
start = readme.index('| key | environment | flag | default | what |')
end = readme.index('\n\n', start)
readme = readme[:start] + open('/tmp/config-table.md').read().rstrip('\n') + readme[end:]
open('README.md', 'w').write(readme)
PY
