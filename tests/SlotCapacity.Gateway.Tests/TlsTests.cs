using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using SlotCapacity.Contracts;
using Xunit.Abstractions;
using Timestamp = Google.Protobuf.WellKnownTypes.Timestamp;

namespace SlotCapacity.Gateway.Tests;

/// <summary>TLS on the gRPC port, and mTLS: a client certificate from the configured CA is required.</summary>
[Collection(WholeSystemCollection.Name)]
public sealed class TlsTests(ITestOutputHelper output) : IDisposable
{
    private readonly string folder = Directory.CreateTempSubdirectory("gateway-tls-").FullName;

    [Fact]
    public async Task With_a_client_CA_only_callers_with_a_certificate_from_it_get_through_the_handshake()
    {
        using var ca = Certificates.Authority("slot test CA");
        using var server = Certificates.Issue(ca, "127.0.0.1", serverAuth: true);
        using var client = Certificates.Issue(ca, "checkout-service", serverAuth: false);
        using var stranger = Certificates.Issue(Certificates.Authority("another CA"), "stranger", serverAuth: false);
        var security = EngineAndGateways.Security with
        {
            TlsCertificateFile = Write("server.pem", server.ExportCertificatePem()),
            TlsKeyFile = Write("server.key", server.GetRSAPrivateKey()!.ExportPkcs8PrivateKeyPem()),
            ClientCaFile = Write("ca.pem", ca.ExportCertificatePem()),
        };
        await using var system = await EngineAndGateways.StartAsync(output, processors: 0);
        var gateway = await system.StartGatewayAsync("gw-tls", security: security);
        Assert.Equal("https", gateway.Address.Scheme);
        var request = new UtilisationRequest { Hub = "TLS1", From = Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow.Date), To = Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow.Date.AddDays(1)) };
        var token = EngineAndGateways.Token(SlotRoles.Viewer);

        using var trusted = Channel(gateway, token, ca, client);
        Assert.NotNull(await new Planning.PlanningClient(trusted).GetUtilisationAsync(request));
        // The certificate opens the connection; the token still decides what the caller may do.
        using var tokenless = Channel(gateway, null, ca, client);
        Assert.Equal(StatusCode.Unauthenticated, (await Assert.ThrowsAsync<RpcException>(async () =>
            await new Planning.PlanningClient(tokenless).GetUtilisationAsync(request))).StatusCode);

        foreach (var certificate in new[] { null, stranger })
        {
            using var refused = Channel(gateway, token, ca, certificate);
            var failed = await Assert.ThrowsAsync<RpcException>(async () => await new Planning.PlanningClient(refused).GetUtilisationAsync(request));
            output.WriteLine($"client certificate {certificate?.Subject ?? "none"}: {failed.StatusCode} {failed.Status.Detail}");
            // The server drops the connection in the TLS handshake; the client reports it as UNAVAILABLE
            // or INTERNAL depending on when it notices (with TLS 1.3, after its own side finished).
            Assert.True(failed.StatusCode is StatusCode.Unavailable or StatusCode.Internal, failed.ToString());
            Assert.Contains("could not be established", failed.Status.Detail, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task With_TLS_and_no_client_CA_the_gateway_warms_up_through_its_own_TLS_port()
    {
        using var ca = Certificates.Authority("slot test CA");
        using var server = Certificates.Issue(ca, "127.0.0.1", serverAuth: true);
        var security = EngineAndGateways.Security with
        {
            TlsCertificateFile = Write("server.pem", server.ExportCertificatePem()),
            TlsKeyFile = Write("server.key", server.GetRSAPrivateKey()!.ExportPkcs8PrivateKeyPem()),
        };
        await using var system = await EngineAndGateways.StartAsync(output, processors: 0);
        var gateway = await system.StartGatewayAsync("gw-tls-warm", security: security);
        Assert.Equal("https", gateway.Address.Scheme);
        Assert.StartsWith("QueryAvailability OK, Reserve InvalidArgument, Confirm InvalidArgument, Release InvalidArgument, in ",
            gateway.Status().WarmUp, StringComparison.Ordinal);
    }

    private string Write(string name, string pem)
    {
        var path = Path.Combine(folder, name);
        File.WriteAllText(path, pem);
        return path;
    }

    /// <summary>A TLS channel trusting only <paramref name="ca"/>, presenting <paramref name="certificate"/> if any.</summary>
    private static Grpc.Net.Client.GrpcChannel Channel(RunningGateway gateway, string? token, X509Certificate2 ca, X509Certificate2? certificate)
    {
        var handler = new SocketsHttpHandler();
        handler.SslOptions.RemoteCertificateValidationCallback = (_, presented, _, _) =>
            presented is X509Certificate2 cert && GatewaySecurity.ChainsTo(cert, new X509Certificate2Collection(ca), serverAuth: true);
        if (certificate is not null) handler.SslOptions.ClientCertificates = new X509CertificateCollection { certificate };
        return SlotChannel.ForAddress(gateway.Address, token, new Grpc.Net.Client.GrpcChannelOptions { HttpHandler = handler, DisposeHttpClient = true });
    }

    public void Dispose() => Directory.Delete(folder, recursive: true);

    private static class Certificates
    {
        public static X509Certificate2 Authority(string name)
        {
            using var key = RSA.Create(2048);
            var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
            request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
            request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
            return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        }

        public static X509Certificate2 Issue(X509Certificate2 authority, string name, bool serverAuth)
        {
            var key = RSA.Create(2048);
            var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
            request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
            request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
                [new Oid(serverAuth ? "1.3.6.1.5.5.7.3.1" : "1.3.6.1.5.5.7.3.2")], false));
            if (serverAuth)
            {
                var names = new SubjectAlternativeNameBuilder();
                names.AddIpAddress(System.Net.IPAddress.Loopback);
                request.CertificateExtensions.Add(names.Build());
            }
            using var issued = request.Create(authority, DateTimeOffset.UtcNow.AddHours(-1), DateTimeOffset.UtcNow.AddHours(12), RandomNumberGenerator.GetBytes(8));
            return issued.CopyWithPrivateKey(key);
        }
    }
}
