# syntax=docker/dockerfile:1
# One image for monocore's processes (docker-compose.yml runs each as its own service):
#   monocore-api     REST API              needs only Node.js + Redis
#   monocore-puller  image pulls           needs zstd (zstd-compressed layers)
#   monocore-worker  boots microVMs (QEMU) needs qemu-system-x86, the guest kernel,
#                    busybox-static, gcc + libc6-dev (static guest init), e2fsprogs
#                    (per-service disks), util-linux (setpriv), kmod, iproute2
#   monocore / mc    the CLI (talks to the API)
# Build: docker build -t monocore:0.3.0 .

# ---- build: compile the workspaces, then drop dev dependencies ----
FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json .npmrc tsconfig.json tsconfig.base.json ./
COPY libs/api-schemas/package.json libs/api-schemas/
COPY libs/client/package.json libs/client/
COPY libs/engine/package.json libs/engine/
COPY libs/native/package.json libs/native/
COPY apps/api/package.json apps/api/
COPY apps/worker/package.json apps/worker/
COPY apps/puller/package.json apps/puller/
COPY apps/cli/package.json apps/cli/
RUN npm ci --no-audit --no-fund
COPY libs libs
COPY apps apps
# Only the shipped packages (the root tsconfig also references test/).
RUN npx tsc -b libs/api-schemas libs/client libs/engine libs/native apps/puller apps/worker apps/api apps/cli \
 && npm prune --omit=dev --no-audit --no-fund \
 && npm rebuild --ignore-scripts \
 && test -x node_modules/.bin/monocore-worker

# ---- runtime ----
FROM node:20-bookworm-slim
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      qemu-system-x86 busybox-static cpio xz-utils zstd iproute2 kmod util-linux \
      e2fsprogs erofs-utils gcc libc6-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# The guest kernel (Debian's generic linux-image, uncompressed vmlinux + modules),
# fetched with apt-get download and unpacked — nothing installed on the image's own system.
COPY scripts/guest-kernel.sh /opt/monocore/scripts/guest-kernel.sh
RUN apt-get update \
 && MONOCORE_KERNEL_DIR=/var/lib/monocore/kernel bash /opt/monocore/scripts/guest-kernel.sh \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/monocore
COPY --from=build /src/package.json /src/package-lock.json ./
COPY --from=build /src/node_modules node_modules
COPY --from=build /src/libs libs
COPY --from=build /src/apps apps
ENV PATH=/opt/monocore/node_modules/.bin:$PATH \
    NODE_ENV=production \
    MONOCORE_HOME=/var/lib/monocore/home \
    MONOCORE_KERNEL_DIR=/var/lib/monocore/kernel
VOLUME ["/var/lib/monocore/home"]
CMD ["monocore", "--help"]
