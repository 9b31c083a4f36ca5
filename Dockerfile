# One image for monocore's processes (docker-compose.yml runs each as its own service):
#   monocore-api     REST API              needs only Node.js + Redis
#   monocore-worker  boots microVMs (QEMU) qemu-system-x86, the guest kernel, busybox-static and
#                    and pulls their images cpio (guest initramfs), gcc + libc6-dev (static guest
#                                          init), e2fsprogs (per-service disks), erofs-utils
#                                          (read-only image roots), util-linux
#                                          (setpriv), kmod, iproute2, zstd (zstd layers),
#                                          passt + nftables (outbound for local_only = false)
#   monocore-puller  image pulls alone     (the worker runs its own puller in-process)
#   monocore / mc    the CLI (talks to the API)
#
#   docker build -t monocore:0.3.0 .
#   docker build --build-arg BASE_IMAGE=registry.example/node:20-bookworm-slim -t monocore:0.3.0 .
#
# BASE_IMAGE: any Debian bookworm image with Node.js >= 20.19 and npm on PATH and a `node` user
# (uid 1000) — the official node:20-bookworm-slim by default. Where no image hub is reachable,
# scripts/docker-base-image.sh builds an equivalent from Debian packages (the compose test does).
# Classic builder and BuildKit alike (no BuildKit-only syntax).
ARG BASE_IMAGE=node:20-bookworm-slim

# ---- build: compile the workspaces, then drop dev dependencies ----
FROM ${BASE_IMAGE} AS build
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
FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      qemu-system-x86 busybox-static cpio xz-utils zstd iproute2 kmod util-linux \
      e2fsprogs erofs-utils gcc libc6-dev ca-certificates passt nftables \
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
# MONOCORE_HOME belongs to root (the worker runs as root, docker-compose.yml says why); the API
# runs as `node` and needs no home.
ENV PATH=/opt/monocore/node_modules/.bin:$PATH \
    NODE_ENV=production \
    MONOCORE_HOME=/var/lib/monocore/home \
    MONOCORE_KERNEL_DIR=/var/lib/monocore/kernel
RUN mkdir -p /var/lib/monocore/home && chmod 0700 /var/lib/monocore/home
CMD ["monocore", "--help"]
