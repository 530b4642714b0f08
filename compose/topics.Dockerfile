# Topic provisioning for real Kafka (compose/LocalCluster, `provision` verb). Build context: the
# repository root; compose/docker-compose.yml runs it as the one-shot topic-init service.

FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY global.json Directory.Build.props Directory.Packages.props ./
COPY processors/SlotCapacity.Kafka/SlotCapacity.Kafka.csproj processors/SlotCapacity.Kafka/
COPY compose/LocalCluster/SlotCapacity.LocalCluster.csproj compose/LocalCluster/
RUN dotnet restore compose/LocalCluster/SlotCapacity.LocalCluster.csproj --use-current-runtime

COPY processors/SlotCapacity.Kafka/ processors/SlotCapacity.Kafka/
COPY compose/LocalCluster/ compose/LocalCluster/
RUN find . -type d \( -name bin -o -name obj \) -prune -exec rm -rf {} + \
 && dotnet publish compose/LocalCluster/SlotCapacity.LocalCluster.csproj \
      -c Release -o /app --use-current-runtime --no-self-contained -p:UseAppHost=false

FROM mcr.microsoft.com/dotnet/runtime:10.0
WORKDIR /app
COPY --from=build /app .
USER $APP_UID
ENTRYPOINT ["dotnet", "SlotCapacity.LocalCluster.dll"]
