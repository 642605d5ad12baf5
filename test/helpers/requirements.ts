import type { TestContext } from 'node:test';

/**
 * Locally a test whose outside requirement (a service, a system package) is
 * missing is skipped with the reason; in CI (SIGHTLINE_REQUIRE_SERVICES=1) it fails,
 * so nothing silently stops being tested.
 */
export function requireOrSkip(t: TestContext, available: boolean, what: string): boolean {
  if (available) return true;
  if (process.env.SIGHTLINE_REQUIRE_SERVICES === '1') {
    throw new Error(`${what} is required (SIGHTLINE_REQUIRE_SERVICES=1) but not available`);
  }
  t.skip(`${what} is not available`);
  return false;
}
