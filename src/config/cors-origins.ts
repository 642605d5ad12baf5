/** The origins of `cors_origins` (comma-separated); none: CORS off. */
export function corsOrigins(value: string): string[] {
  return value
    .split(',')
    .map((o) => o.trim())
    .filter(Boolean);
}

/** Whether a request's Origin may read answers, by the origins of corsOrigins() (`*`: any). */
export function originAllowed(origins: readonly string[], origin: string | undefined): boolean {
  return origin !== undefined && (origins.includes('*') || origins.includes(origin));
}
