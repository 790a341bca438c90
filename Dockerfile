# The platform host with the four service components, for `docker compose up`.
# Build stage: the host (native, release) and the components (wasm32-wasip2, release).
FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
RUN cargo build --release -p platform \
 && cargo build --release --target wasm32-wasip2 -p user -p product -p order -p notification

# Run stage: the binary, the components, the migrations and the configuration.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 platform \
 && useradd --system --uid 10001 --gid platform --home /app platform
WORKDIR /app
COPY --from=build /src/target/release/platform /usr/local/bin/platform
COPY --from=build /src/target/wasm32-wasip2/release/*.wasm target/wasm32-wasip2/release/
COPY platform.toml ./
COPY migrations ./migrations
# The state directory (deployed versions, compiled code, admin token) must be writable; in
# a fleet (PLATFORM_FLEET) it keeps only the compiled-code cache. A numeric user, so that
# Kubernetes' runAsNonRoot can check it (deploy/k8s).
RUN mkdir -p /app/.platform && chown -R platform:platform /app/.platform
USER 10001:10001
EXPOSE 8001 8002 8003 8004 9000
# Components are already built: do not try to build them at start. The admin API stays on
# the container's loopback: `docker compose exec platform platform ps` (or deploy, rollback).
CMD ["platform", "up", "--no-build"]
