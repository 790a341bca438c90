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
 && useradd --system --home /app platform
WORKDIR /app
COPY --from=build /src/target/release/platform /usr/local/bin/platform
COPY --from=build /src/target/wasm32-wasip2/release/*.wasm target/wasm32-wasip2/release/
COPY platform.toml ./
COPY migrations ./migrations
USER platform
EXPOSE 8001 8002 8003 8004
# Components are already built: do not try to build them at start.
CMD ["platform", "up", "--no-build"]
