using System.Collections.Concurrent;
using System.Security.Claims;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace SlotCapacity.Gateway;

/// <summary>
/// Validates a bearer token once and remembers the result until the token expires, keyed by the
/// exact token string: checkout presents the same token on thousands of calls a second, and
/// parsing it and checking its HMAC on every call was a large part of a read's CPU (measured in
/// load/README.md). Only valid tokens are remembered, never past their <c>exp</c> (no clock skew
/// added) and never longer than <see cref="MaximumAge"/>, so that a key withdrawn by the issuer
/// (GATEWAY_JWT_AUTHORITY) stops being honoured within that time. Any other string, a forged,
/// edited or expired token included, is a miss and goes through full validation. The validation
/// rules are not part of the key: one cache serves one authentication scheme, whose rules
/// (issuer, audience, algorithms) do not change while it runs.
/// </summary>
public sealed class ValidatedTokenCache(TokenHandler inner, TimeProvider clock, int capacity = ValidatedTokenCache.DefaultCapacity) : TokenHandler
{
    public const int DefaultCapacity = 10_000;
    public static readonly TimeSpan MaximumAge = TimeSpan.FromMinutes(5);

    private readonly ConcurrentDictionary<string, Entry> entries = new(StringComparer.Ordinal);

    private sealed record Entry(DateTime Until, ClaimsIdentity Identity, SecurityToken Token, string? Issuer, string? TokenType);

    /// <summary>The gateway's handler: JWTs with claim names kept as written ("sub", "role").</summary>
    public static ValidatedTokenCache ForJwt(TimeProvider clock) => new(new JsonWebTokenHandler { MapInboundClaims = false }, clock);

    /// <summary>Tokens remembered now.</summary>
    public int Count => entries.Count;

    public override async Task<TokenValidationResult> ValidateTokenAsync(string token, TokenValidationParameters validationParameters)
    {
        var now = clock.GetUtcNow().UtcDateTime;
        if (token is not null && entries.TryGetValue(token, out var hit))
        {
            if (now < hit.Until)
            {
                // A copy per call: nothing a request does to its principal reaches another request.
                return new TokenValidationResult
                {
                    IsValid = true,
                    ClaimsIdentity = hit.Identity.Clone(),
                    SecurityToken = hit.Token,
                    Issuer = hit.Issuer,
                    TokenType = hit.TokenType,
                };
            }
            entries.TryRemove(token, out _);
        }
        var result = await inner.ValidateTokenAsync(token, validationParameters).ConfigureAwait(false);
        if (result.IsValid && token is not null && result.SecurityToken is { } validated && result.ClaimsIdentity is { } identity)
        {
            var until = validated.ValidTo == DateTime.MinValue ? now : Min(validated.ValidTo, now + MaximumAge);
            if (until > now && Room(now)) entries[token] = new Entry(until, identity.Clone(), validated, result.Issuer, result.TokenType);
        }
        return result;
    }

    /// <summary>Whether one more token fits; when full, expired ones are dropped first. Never grows past
    /// the capacity: many distinct valid tokens then simply go through full validation.</summary>
    private bool Room(DateTime now)
    {
        if (entries.Count < capacity) return true;
        foreach (var (key, entry) in entries)
            if (entry.Until <= now) entries.TryRemove(key, out _);
        return entries.Count < capacity;
    }

    private static DateTime Min(DateTime a, DateTime b) => a < b ? a : b;

    public override SecurityToken ReadToken(string token) => inner.ReadToken(token);

    public override Task<TokenValidationResult> ValidateTokenAsync(SecurityToken token, TokenValidationParameters validationParameters) =>
        inner.ValidateTokenAsync(token, validationParameters);
}
