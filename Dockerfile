# syntax=docker/dockerfile:1
# The identity service. Not built or run in this repository's CI (no container runtime there):
# see docs/deployment.md.
#
#   docker build -t identity .
#
# TypeScript runs through tsx at start-up (`node --import tsx src/main.ts`, as `npm start` does),
# so there is no compile output: the build stage only type-checks, and the runtime stage ships the
# sources with the production dependencies (tsx is one of them).

# --- build: the full install and a type check --------------------------------------------------
FROM node:24-bookworm-slim AS build
WORKDIR /app
# --ignore-scripts: no dependency needs its install script, so none runs in the image.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY proto ./proto
COPY gen ./gen
COPY src ./src
# test/ is not in the build context (.dockerignore), so this checks src/ and gen/; CI checks the rest.
RUN npx --no-install tsc --noEmit

# --- runtime: production dependencies and the checked sources ----------------------------------
FROM node:24-bookworm-slim AS runtime
# NODE_ENV=production: without IDENTITY_CONFIG the service refuses to start rather than run dev mode.
ENV NODE_ENV=production PORT=8080 GRPC_PORT=9090
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
# Copied from the build stage rather than the context: BuildKit skips stages the target does not
# use, and this keeps the type check above in every build.
COPY --from=build /app/tsconfig.json ./
COPY --from=build /app/proto ./proto
COPY --from=build /app/gen ./gen
COPY --from=build /app/src ./src
# Files stay root-owned and read-only to the service; tsx keeps its cache under /tmp.
USER node
EXPOSE 8080 9090
# No curl in the slim image: node's fetch. /healthz is liveness (the process answers); the
# listeners open only after start-up has connected to MongoDB and created its indexes, so the
# first pass also means the store was reachable then. /readyz checks the store on every call.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 8080) + '/healthz', { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# node itself is PID 1, so `docker stop`'s SIGTERM reaches the service's handler (no npm wrapper).
CMD ["node", "--import", "tsx", "src/main.ts"]
