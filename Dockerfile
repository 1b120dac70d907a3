# Build stage: dependencies first (a layer that survives source edits), then the binary.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY crates/intake-domain/Cargo.toml crates/intake-domain/
COPY crates/intake-storage/Cargo.toml crates/intake-storage/
COPY crates/intake-ratelimit/Cargo.toml crates/intake-ratelimit/
COPY crates/intake-service/Cargo.toml crates/intake-service/
COPY crates/intake-relay/Cargo.toml crates/intake-relay/
COPY crates/intake-api/Cargo.toml crates/intake-api/
COPY crates/intake-client/Cargo.toml crates/intake-client/
COPY crates/intake-conformance/Cargo.toml crates/intake-conformance/
# Every member needs a target for the manifests to load; the API crate declares its bench.
RUN for c in crates/*/; do mkdir -p $c/src && echo '' > $c/src/lib.rs; done \
 && echo 'fn main() {}' > crates/intake-api/src/main.rs \
 && mkdir -p crates/intake-api/benches && echo 'fn main() {}' > crates/intake-api/benches/ingest.rs \
 && cargo build --release --bin intake \
 && rm -rf crates/*/src crates/intake-api/benches
COPY crates crates
COPY migrations migrations
COPY docs docs
# sqlx checks statements against the committed offline data (.cargo/config.toml: SQLX_OFFLINE).
COPY .sqlx .sqlx
RUN touch crates/*/src/lib.rs crates/intake-api/src/main.rs \
 && cargo build --release --bin intake

# Runtime stage: the binary and its configuration, as an unprivileged user.
FROM debian:bookworm-slim
COPY --from=build /src/target/release/intake /usr/local/bin/intake
COPY config /app/config
WORKDIR /app
ENV INTAKE_CONFIG_DIR=/app/config
USER nobody
EXPOSE 8080
ENTRYPOINT ["intake"]
CMD ["serve"]
