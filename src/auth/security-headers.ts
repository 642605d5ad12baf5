import type { FastifyInstance } from 'fastify';
import helmet from '@fastify/helmet';

/**
 * Security headers on every response (@fastify/helmet), for the API and for the
 * dashboard, a same-origin single-page app that works offline: scripts, styles,
 * fonts and XHR/WebSocket only from this origin (CSP 'self' covers same-origin
 * ws:/wss:), images also from data: and blob: URLs (frames shown in the page),
 * no plugins, no framing by other origins. HSTS and upgrade-insecure-requests
 * only when the server itself speaks TLS: over plain HTTP on a factory network
 * they would send browsers to an https:// that is not there.
 *
 * The headers go straight onto the raw response, so the hijacked tus answers
 * carry them too; a WebSocket upgrade is answered by ws and is unaffected.
 */
export async function installSecurityHeaders(app: FastifyInstance, tls: boolean): Promise<void> {
  await app.register(helmet, {
    global: true,
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        scriptSrcAttr: ["'none'"],
        // Component libraries set inline style attributes.
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", 'data:', 'blob:'],
        fontSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        workerSrc: ["'self'", 'blob:'],
        objectSrc: ["'none'"],
        baseUri: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'self'"],
        ...(tls ? { upgradeInsecureRequests: [] } : {}),
      },
    },
    strictTransportSecurity: tls ? { maxAge: 180 * 24 * 3600, includeSubDomains: false } : false,
    // Cross-origin API clients use CORS, which CORP does not restrict.
    crossOriginResourcePolicy: { policy: 'same-origin' },
    referrerPolicy: { policy: 'no-referrer' },
  });
}
