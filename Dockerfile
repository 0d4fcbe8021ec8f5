# notification-worker container image.
#   docker build -t notification-worker .
#   docker run --rm -e NATS_URL=nats://host.docker.internal:4222 -e NOTIF_STORE=sqlite -p 8080:8080 notification-worker
# Credentials are never baked in: pass them at run time (environment, mounted files).

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so that code changes do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin notification-worker

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/notification-worker --create-home worker
COPY --from=build /src/target/release/notification-worker /usr/local/bin/notification-worker
USER 10001:10001
WORKDIR /var/lib/notification-worker
ENV ENVIRONMENT=production \
    HTTP_ADDR=0.0.0.0:8080 \
    NOTIF_SQLITE_PATH=/var/lib/notification-worker/data/notifications.db
EXPOSE 8080
# Liveness from inside the image, without curl: bash's /dev/tcp.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ' 200 ' <&3"]
ENTRYPOINT ["notification-worker"]
CMD ["run"]
