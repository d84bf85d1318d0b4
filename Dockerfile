# Portico: build the release binary, then run it alone in a slim image.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# The whole tree (less .dockerignore): Cargo.toml names test and example targets too.
COPY . .
RUN cargo build --release --locked --bin portico

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data portico \
 && mkdir -p /data && chown portico /data
COPY --from=build /src/target/release/portico /usr/local/bin/portico
USER portico
# Templates, stylesheet and migrations are compiled into the binary; /data holds the
# SQLite database (when no DATABASE_URL is given) and the generated secret key.
ENV PORTICO_BIND=0.0.0.0:8080 \
    PORTICO_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/portico"]
CMD ["serve"]
