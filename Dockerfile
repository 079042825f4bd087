# syntax=docker/dockerfile:1
# The identity service. Not built or run in this repository's CI (no container runtime there; CI
# proves the same production install without Docker instead): see docs/deployment.md.
#
#   docker build -t identity .
#   docker run --rm identity node dist/src/keygen.js        # a signing key for the config
#
# Production runs the compiled JavaScript (`npm run build` to dist/, the console's files included):
# the build stage has the full install and the compilers, the runtime stage only the production
# dependencies and dist/.

# --- build: the full install, then the console (Vite) and tsc to dist/ ---------------------------
FROM node:24-bookworm-slim AS build
WORKDIR /app
# --ignore-scripts: no dependency needs its install script, so none runs in the image.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY gen ./gen
COPY src ./src
# The operator console's sources: the build makes its files again and puts them in dist/console/.
COPY console ./console
# Type-checks src/ and gen/ as it emits (test/ is not in the build context; CI checks the rest).
RUN npm run build

# --- runtime: production dependencies and the compiled service ----------------------------------
FROM node:24-bookworm-slim AS runtime
# NODE_ENV=production: without IDENTITY_CONFIG the service refuses to start rather than run dev mode.
ENV NODE_ENV=production PORT=8080 GRPC_PORT=9090
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
# No sources, tsx, vitest or buf: only what `node dist/src/main.js` loads. Root-owned, read-only to the service.
COPY --from=build /app/dist ./dist
USER node
EXPOSE 8080 9090
# No curl in the slim image: node's fetch. /healthz is liveness (the process answers); the
# listeners open only after start-up has connected to MongoDB and created its indexes, so the
# first pass also means the store was reachable then. /readyz checks the store on every call.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/healthz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# node itself is PID 1, so `docker stop`'s SIGTERM reaches the service's handler (no npm wrapper).
CMD ["node", "dist/src/main.js"]
