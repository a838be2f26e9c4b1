# One image for every stockcast service: `stockcast serve <service>`.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p stockcast

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/stockcast /usr/local/bin/stockcast
# Writable by the service user: the model registry proxy's artifact cache lives here (a named
# volume mounted on it starts with this ownership).
RUN mkdir -p /var/cache/stockcast && chown 65532:65532 /var/cache/stockcast
USER 65532:65532
ENTRYPOINT ["stockcast"]
