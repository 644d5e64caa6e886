# CPU image: intake-api and evaluator, and every role for CPU-only deployments. The role is chosen by the command:
#   node -r @swc-node/register apps/<role>/src/main.ts
# TypeScript runs through @swc-node/register (path aliases and decorator metadata included), so the image carries
# the dev dependencies; there is no separate build step to drift from what the tests run.
FROM node:20-bookworm-slim
WORKDIR /app
# The CPU execution provider is bundled with onnxruntime-node; skip the CUDA download (NuGet) entirely.
ENV ONNXRUNTIME_NODE_INSTALL=skip \
    NODE_OPTIONS=--enable-source-maps
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund && npm cache clean --force
COPY tsconfig.json nest-cli.json ./
COPY libs libs
COPY apps apps
# The shipped tiny packs, so the image runs out of the box; deployments mount real packs over /models.
COPY models /models
ENV VLM_PACK_DIR=/models/factory-vlm CLIP_PACK_DIR=/models/factory-clip REWARD_PACK_DIR=/models/factory-guard \
    BLOB_DIR=/var/lib/moderation/blobs PORT=3000 HEALTH_PORT=9464
RUN mkdir -p /var/lib/moderation/blobs && chown -R node:node /var/lib/moderation
USER node
EXPOSE 3000 9464
CMD ["node", "-r", "@swc-node/register", "apps/intake-api/src/main.ts"]
