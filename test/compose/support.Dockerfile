# The compose test's stand-ins for the images a user pulls from a hub, none reachable here:
# Redis (for the `redis` service: redis-server + redis-cli, a `redis` user owning /data, like
# redis:7.2-bookworm) and Debian's docker-registry (the test's own registry inside the compose
# network, serving the test images read-only). Built on the same local base as monocore's image.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server redis-tools docker-registry \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data
WORKDIR /data
