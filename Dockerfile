# syntax=docker/dockerfile:1
#
# One image for both shapes: `docker run IMAGE serve` (embedded, or an API replica
# with --no-worker) and `docker run IMAGE worker`. docs/deployment.md says how to run it.

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: TypeScript and the dashboard need the dev dependencies (tsc, vite) ----
FROM ${NODE_IMAGE} AS build
# The native JPEG decoder (native/jpeg-decode) is compiled by npm ci's install script:
# a C compiler, make, python3 (node-gyp) and libjpeg-turbo's headers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential python3 libjpeg62-turbo-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Lockfile and .npmrc first, so that a source change does not redo the install layer.
COPY package.json package-lock.json .npmrc ./
COPY scripts/build-native.mjs ./scripts/
COPY native/jpeg-decode/binding.gyp native/jpeg-decode/jpeg_decode.c native/jpeg-decode/linear_reduce.c native/jpeg-decode/linear_reduce.h ./native/jpeg-decode/
RUN npm ci --no-audit --no-fund
# Without a working decoder the image would quietly decode with sharp only: fail here instead.
RUN node -e "require('./native/jpeg-decode/build/Release/jpeg_decode.node')"
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY web ./web
# build = tsc (src -> dist) and vite (web -> dist/web); both are needed at run time.
RUN npm run build

# ---- runtime: production dependencies only, no compiler, no sources ----
FROM ${NODE_IMAGE} AS runtime
# tini as PID 1: Node as PID 1 gets no default signal handlers and reaps no zombies;
# tini forwards SIGTERM so that serve and worker drain (finish in-flight work, exit 0).
# ffmpeg: pulled sources of kind ffmpeg (RTSP, HTTP video, files) run it as a child process (docs/sources.md).
# libjpeg62-turbo: the library the native JPEG decoder links to.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini ffmpeg libjpeg62-turbo \
 && rm -rf /var/lib/apt/lists/*
# A fixed numeric uid/gid: Kubernetes' runAsNonRoot can only verify a numeric USER,
# and volume permissions (fsGroup, chown on the host) need a number to agree on.
RUN groupadd --system --gid 10001 sightline \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --shell /usr/sbin/nologin sightline
WORKDIR /app
# Two malloc arenas: model loads start new threads, and glibc's default (8 × cores arenas)
# keeps what they freed, so RSS grew with every load/unload (bench/results/*-model-swap.md).
ENV NODE_ENV=production MALLOC_ARENA_MAX=2
COPY package.json package-lock.json .npmrc ./
COPY scripts/build-native.mjs ./scripts/
# .npmrc carries onnxruntime-node-install=skip: the CPU binaries ship in the package,
# and the install script would otherwise download CUDA libraries. No compiler here:
# the native decoder comes built from the build stage.
RUN SIGHTLINE_SKIP_NATIVE=1 npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force
COPY --from=build /src/native/jpeg-decode/build/Release/jpeg_decode.node ./native/jpeg-decode/build/Release/
COPY --from=build /src/dist ./dist
# The built-in model: ./models under WORKDIR is the default models_dir. Mount another
# model repository over /app/models (or set SIGHTLINE_MODELS_DIR) to serve yours.
COPY models ./models
# `sightline simulate` and the examples read the sample images; they are small.
COPY samples ./samples
RUN mkdir -p /data && chown 10001:10001 /data
# Results, queue, keys, snapshots and uploads of the embedded shape live here; a volume
# keeps them across container replacements and lets the root filesystem be read-only.
VOLUME /data
ENV SIGHTLINE_DATA_DIR=/data \
    SIGHTLINE_HOST=0.0.0.0
USER 10001:10001
# 8080: the API (`serve`); 9464: a worker's /livez, /readyz and /metrics (`worker`).
EXPOSE 8080 9464
# /livez never touches a dependency: an unhealthy mark means the process itself is stuck,
# not that the broker or database is away (that is /readyz). The start period covers
# model loading and warm-up. fetch is built into Node 20, so no curl in the image.
# The same image runs `serve` (8080) and `worker` (9464): either port answering is healthy.
# A worker opens no port: Compose and Kubernetes set their own checks for it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "Promise.any([process.env.SIGHTLINE_PORT||8080,process.env.SIGHTLINE_WORKER_HTTP_PORT||9464].map(p=>fetch('http://127.0.0.1:'+p+'/livez').then(r=>r.ok||Promise.reject()))).then(()=>process.exit(0),()=>process.exit(1))"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/dist/cli/main.js"]
CMD ["serve"]
