# syntax=docker/dockerfile:1
# stowage: a release build in one stage, a small non-root runtime in the next.
#   docker build -t stowage .
#   docker run -p 8000:8000 -e PORT=8000 -e DATABASE_URL=... -e SECRET_KEY=... stowage

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own: it is rebuilt only when Cargo.toml/Cargo.lock
# change. Askama compiles templates in, and sqlx embeds the migrations.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src tests/support tests/it bench/support \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > tests/support/s3_server.rs \
    && echo 'fn main() {}' > bench/support/redirect_floor.rs \
    && echo 'fn main() {}' > bench/support/sequential_copy.rs \
    && touch tests/it/main.rs \
    && cargo build --release --locked --bin stowage \
    && rm -rf src
COPY src src
COPY migrations migrations
COPY templates templates
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin stowage

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /app --uid 10001 stowage
WORKDIR /app
COPY --from=build /src/target/release/stowage /usr/local/bin/stowage
COPY static static
USER stowage
ENV HOST=0.0.0.0 \
    PORT=8000 \
    STOWAGE_ENV=production \
    LOG_FORMAT=json
EXPOSE 8000
# SIGTERM: stowage stops accepting, lets requests finish for SHUTDOWN_GRACE_SECS, exits 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
    CMD curl -fs "http://127.0.0.1:${PORT}/healthz" || exit 1
CMD ["stowage", "serve"]
