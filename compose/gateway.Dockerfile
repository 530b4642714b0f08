# Checkout/planning gRPC gateway (gateway/SlotCapacity.Gateway). Build context: the repository
# root, e.g.
#   docker build -f compose/gateway.Dockerfile -t slot-capacity/gateway:local .
# compose/docker-compose.yml builds it this way and passes `--urls http://0.0.0.0:8080`.

FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src

# Project files first: the restore layer is reused until a project file or package version changes.
COPY global.json Directory.Build.props Directory.Packages.props ./
COPY schemas/SlotCapacity.Schemas.csproj schemas/
COPY processors/SlotCapacity.Kafka/SlotCapacity.Kafka.csproj processors/SlotCapacity.Kafka/
COPY processors/SlotCapacity.Domain/SlotCapacity.Domain.csproj processors/SlotCapacity.Domain/
COPY processors/SlotCapacity.History/SlotCapacity.History.csproj processors/SlotCapacity.History/
COPY gateway/SlotCapacity.Gateway/SlotCapacity.Gateway.csproj gateway/SlotCapacity.Gateway/
RUN dotnet restore gateway/SlotCapacity.Gateway/SlotCapacity.Gateway.csproj --use-current-runtime

COPY schemas/ schemas/
COPY processors/SlotCapacity.Kafka/ processors/SlotCapacity.Kafka/
COPY processors/SlotCapacity.Domain/ processors/SlotCapacity.Domain/
COPY processors/SlotCapacity.History/ processors/SlotCapacity.History/
COPY gateway/SlotCapacity.Gateway/ gateway/SlotCapacity.Gateway/
# bin/ and obj/ from a developer's checkout (when .dockerignore does not exclude them) hold
# host paths and stale generated code; drop them. publish restores again from the cache above.
# --use-current-runtime: only this platform's native libraries (librdkafka, RocksDB) go into the
# image, not those of every OS (218 MB down to 87 MB for the processor); it still follows the build
# machine, so an arm64 host gets arm64 libraries. ReadyToRun, as under `make run`: a restarted
# gateway is ready sooner (README, "Faults and recovery", twelfth session).
RUN find . -type d \( -name bin -o -name obj \) -prune -exec rm -rf {} + \
 && dotnet publish gateway/SlotCapacity.Gateway/SlotCapacity.Gateway.csproj \
      -c Release -o /app --use-current-runtime --no-self-contained -p:UseAppHost=false -p:PublishReadyToRun=true

FROM mcr.microsoft.com/dotnet/aspnet:10.0
WORKDIR /app
COPY --from=build /app .
# The availability view checkpoint (GATEWAY_VIEW_CHECKPOINT) lives on a volume mounted here.
RUN mkdir -p /var/lib/slot-gateway && chown "$APP_UID" /var/lib/slot-gateway
USER $APP_UID
EXPOSE 8080
ENTRYPOINT ["dotnet", "SlotCapacity.Gateway.dll"]
CMD ["--urls", "http://0.0.0.0:8080"]
