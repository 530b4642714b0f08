# Slot processor (processors/SlotCapacity.Processor). Build context: the repository root, e.g.
#   docker build -f compose/processor.Dockerfile -t slot-capacity/processor:local .
# compose/docker-compose.yml builds it this way.

FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src

# Project files first: the restore layer is reused until a project file or package version changes.
COPY global.json Directory.Build.props Directory.Packages.props ./
COPY schemas/SlotCapacity.Schemas.csproj schemas/
COPY processors/SlotCapacity.Kafka/SlotCapacity.Kafka.csproj processors/SlotCapacity.Kafka/
COPY processors/SlotCapacity.Domain/SlotCapacity.Domain.csproj processors/SlotCapacity.Domain/
COPY processors/SlotCapacity.Processor/SlotCapacity.Processor.csproj processors/SlotCapacity.Processor/
RUN dotnet restore processors/SlotCapacity.Processor/SlotCapacity.Processor.csproj --use-current-runtime

COPY schemas/ schemas/
COPY processors/SlotCapacity.Kafka/ processors/SlotCapacity.Kafka/
COPY processors/SlotCapacity.Domain/ processors/SlotCapacity.Domain/
COPY processors/SlotCapacity.Processor/ processors/SlotCapacity.Processor/
# bin/ and obj/ from a developer's checkout (when .dockerignore does not exclude them) hold
# host paths and stale generated code; drop them. publish restores again from the cache above.
# --use-current-runtime: only this platform's native libraries (librdkafka, RocksDB) go into the
# image, not those of every OS (218 MB down to 87 MB for the processor); it still follows the build
# machine, so an arm64 host gets arm64 libraries.
RUN find . -type d \( -name bin -o -name obj \) -prune -exec rm -rf {} + \
 && dotnet publish processors/SlotCapacity.Processor/SlotCapacity.Processor.csproj \
      -c Release -o /app --use-current-runtime --no-self-contained -p:UseAppHost=false

FROM mcr.microsoft.com/dotnet/runtime:10.0
WORKDIR /app
# The RocksDB state directory; created here so a named volume mounted on it starts out owned
# by the non-root app user (Docker copies the image directory's ownership into a new volume).
ENV PROCESSOR_STATE_DIR=/var/lib/slot-processor
RUN mkdir -p /var/lib/slot-processor && chown "$APP_UID" /var/lib/slot-processor
COPY --from=build /app .
USER $APP_UID
ENTRYPOINT ["dotnet", "SlotCapacity.Processor.dll"]
