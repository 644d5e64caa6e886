# CPU image: intake-api and evaluator, and every role for CPU-only deployments. The role is chosen by the command:
#   node dist/apps/<role>/src/main.js
# Two stages: the build stage installs every dependency and compiles (npm run build: tsc, aliases rewritten); the
# runtime stage carries the compiled JavaScript, production dependencies only, the fitted config/ and the packs.
# Node 24 LTS (Node 20 reached end of life on 2026-04-30; content-disposition, cookie and file-type need >= 22).
FROM node:24-bookworm-slim AS build
WORKDIR /app
# .npmrc skips onnxruntime-node's CUDA download: the CPU execution provider is bundled.
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY tools/build tools/build
COPY libs libs
COPY apps apps
# Production dependencies only, and only this platform's onnxruntime binaries (the package ships five: 245 MB).
RUN npm run build && npm prune --omit=dev --no-audit --no-fund \
 && node -e "const fs=require('fs'),d='node_modules/onnxruntime-node/bin/napi-v6';for(const os of fs.readdirSync(d))for(const a of fs.readdirSync(d+'/'+os))if(os!==process.platform||a!==process.arch)fs.rmSync(d+'/'+os+'/'+a,{recursive:true})"

FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production \
    NODE_OPTIONS=--enable-source-maps
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/dist dist
# The ETA thresholds fitted for the shipped evaluator packs, the revision profiles (config/profiles.json: factory-vlm's
# default, its artifact and detector) and the tiny example.
COPY config config
# The shipped packs, so the image runs out of the box; deployments mount real packs over /models.
COPY models /models
ENV VLM_PACK_DIR=/models/factory-vlm CLIP_PACK_DIR=/models/factory-clip REWARD_PACK_DIR=/models/factory-guard \
    ETA_CONFIG=/app/config/eta.json \
    BLOB_DIR=/var/lib/moderation/blobs PORT=3000 HEALTH_PORT=9464
RUN mkdir -p /var/lib/moderation/blobs && chown -R node:node /var/lib/moderation
USER node
EXPOSE 3000 9464
CMD ["node", "dist/apps/intake-api/src/main.js"]
