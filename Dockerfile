# Build stage: dependencies first (a layer that survives source edits), then the binary.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates/intake-domain/Cargo.toml crates/intake-domain/
COPY crates/intake-storage/Cargo.toml crates/intake-storage/
COPY crates/intake-api/Cargo.toml crates/intake-api/
RUN for c in intake-domain intake-storage intake-api; do \
      mkdir -p crates/$c/src && echo '' > crates/$c/src/lib.rs; done \
 && echo 'fn main() {}' > crates/intake-api/src/main.rs \
 && cargo build --release --bin intake \
 && rm -rf crates/*/src
COPY crates crates
COPY migrations migrations
COPY docs docs
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
