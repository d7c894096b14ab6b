# syntax=docker/dockerfile:1
# The `longrun` binary in a small, non-root runtime image.
#   docker build -t longrun .
#   docker run --rm -e REDIS_URL=redis://redis:6379/ -e LONGRUN_JWT_SECRET=... longrun api

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target caches survive between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p longrun \
 && cp target/release/longrun /usr/local/bin/longrun

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/longrun /usr/local/bin/longrun
USER nonroot:nonroot
ENV LONGRUN_API_ADDR=0.0.0.0:8080 \
    LONGRUN_WS_ADDR=0.0.0.0:8081 \
    LONGRUN_LOG_FORMAT=json
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/longrun"]
CMD ["--help"]
