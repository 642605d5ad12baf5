import { fileURLToPath } from 'node:url';
import vue from '@vitejs/plugin-vue';
import { defineConfig } from 'vite';

const target = process.env.SIGHTLINE_URL ?? 'http://localhost:8080';

/**
 * The dashboard (web/) is built into dist/web, which the server serves at `/`
 * (src/server/web.ts). `base: './'`: every asset URL is relative, so the app also
 * works behind a reverse proxy under a path prefix. `npm run dev:web` serves it
 * with hot reload and proxies the API (and the /v1/stream WebSocket) to a running
 * server: SIGHTLINE_URL, default http://localhost:8080.
 */
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: './',
  publicDir: false,
  plugins: [vue()],
  define: {
    // vue-i18n: messages are compiled without eval (the CSP has no 'unsafe-eval'); no legacy API.
    __VUE_I18N_FULL_INSTALL__: false,
    __VUE_I18N_LEGACY_API__: false,
    __INTLIFY_PROD_DEVTOOLS__: false,
    __INTLIFY_JIT_COMPILATION__: true,
    __INTLIFY_DROP_MESSAGE_COMPILER__: false,
    __VUE_OPTIONS_API__: false,
    __VUE_PROD_DEVTOOLS__: false,
    __VUE_PROD_HYDRATION_MISMATCH_DETAILS__: false,
  },
  build: {
    outDir: fileURLToPath(new URL('../dist/web', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    // No source maps in the package; `npm run dev:web` has them.
    sourcemap: false,
    reportCompressedSize: true,
    chunkSizeWarningLimit: 400,
  },
  server: {
    proxy: {
      '/v1/stream': { target, ws: true, changeOrigin: true },
      '/v1': { target, changeOrigin: true },
      '/livez': { target, changeOrigin: true },
      '/readyz': { target, changeOrigin: true },
      '/metrics': { target, changeOrigin: true },
    },
  },
});
