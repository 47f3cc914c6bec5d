# The image that `pgstress k8s render` runs: one binary, the coordinator or an agent by the
# pod's completion index (`pgstress k8s entrypoint`). Build: docker build -t pgstress .

# Build on the same Debian release as the runtime, so the binary links the libssl it finds.
FROM rust:1-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin pgstress \
    && cp target/release/pgstress /usr/local/bin/pgstress

# Slim rather than distroless: `kubectl cp` copies the logs out with the container's `tar`.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends libssl3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/pgstress /usr/local/bin/pgstress
# The default query's parameter values, found as `data/` from the working folder.
COPY data /pgstress/data
# The pods' non-root user (65532, as the manifests' runAsUser) owns the logs folder.
RUN mkdir -p /pgstress/logs && chown 65532:65532 /pgstress/logs
WORKDIR /pgstress
USER 65532:65532
ENTRYPOINT ["pgstress"]
CMD ["--help"]
