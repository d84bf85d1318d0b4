# syntax=docker/dockerfile:1
# Portico: build the release binary, then run it alone in a slim image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# The whole tree (less .dockerignore): Cargo.toml names test and example targets too, and
# .cargo/config.toml sets the flags SQLite is compiled with.
COPY . .
# Cache mounts keep downloaded crates and compiled dependencies between builds; the binary
# leaves the cached target directory stripped of its symbols.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin portico \
 && install -D --strip target/release/portico /out/portico

FROM debian:bookworm-slim
# No packages added: TLS roots (webpki), templates, stylesheet and migrations are all
# compiled into the binary. /data holds the SQLite database (when no DATABASE_URL is given)
# and the generated secret key, for the portico user alone.
RUN useradd --system --uid 10001 --home-dir /data portico \
 && mkdir -p /data && chown portico /data && chmod 700 /data
COPY --from=build /out/portico /usr/local/bin/portico
USER portico
ENV PORTICO_BIND=0.0.0.0:8080 \
    PORTICO_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8080
# SIGTERM starts a graceful shutdown of at most PORTICO_SHUTDOWN_TIMEOUT (20 s): give
# `docker stop` longer than that (docker stop -t 30; stop_grace_period in Compose).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/portico"]
CMD ["serve"]
