using Microsoft.IdentityModel.Tokens;

namespace SlotCapacity.Gateway.Tests;

/// <summary>The gateway's cache of validated tokens: a hit only for the exact token, while it is valid.</summary>
public sealed class ValidatedTokenCacheTests
{
    private static readonly byte[] Key = SlotTokens.NewKey();

    private sealed class Clock(DateTimeOffset now) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = now;
        public override DateTimeOffset GetUtcNow() => Now;
    }

    /// <summary>The gateway's validation rules for <see cref="Key"/>, with no clock skew so expiry is exact.</summary>
    private static TokenValidationParameters Rules(Clock clock) => new()
    {
        ValidIssuer = SecuritySettings.DefaultIssuer,
        ValidAudience = SecuritySettings.DefaultAudience,
        IssuerSigningKey = new SymmetricSecurityKey(Key),
        ValidAlgorithms = [SecurityAlgorithms.HmacSha256],
        RequireExpirationTime = true,
        ClockSkew = TimeSpan.Zero,
        RoleClaimType = SlotClaims.Role,
        NameClaimType = SlotClaims.Subject,
        LifetimeValidator = (notBefore, expires, _, _) => clock.GetUtcNow().UtcDateTime is var now && now >= notBefore && now < expires,
    };

    /// <summary>A cache that has validated (and so remembered) a checkout token of the given lifetime.</summary>
    private static async Task<(Clock Clock, ValidatedTokenCache Cache, string Token)> RememberedAsync(TimeSpan lifetime)
    {
        var clock = new Clock(DateTimeOffset.UtcNow);
        var cache = ValidatedTokenCache.ForJwt(clock);
        var token = SlotTokens.Issue(Key, "shop", [SlotRoles.Checkout], lifetime, issuedAt: clock.Now.UtcDateTime);
        Assert.True((await cache.ValidateTokenAsync(token, Rules(clock))).IsValid);
        return (clock, cache, token);
    }

    [Fact]
    public async Task A_valid_token_is_validated_once_and_each_call_gets_its_own_copy_of_the_identity()
    {
        var clock = new Clock(DateTimeOffset.UtcNow);
        var cache = ValidatedTokenCache.ForJwt(clock);
        var token = SlotTokens.Issue(Key, "shop", [SlotRoles.Checkout], TimeSpan.FromHours(1), issuedAt: clock.Now.UtcDateTime);

        var first = await cache.ValidateTokenAsync(token, Rules(clock));
        var second = await cache.ValidateTokenAsync(token, Rules(clock));

        Assert.True(first.IsValid);
        Assert.True(second.IsValid);
        Assert.Equal(1, cache.Count);
        Assert.Equal("shop", second.ClaimsIdentity.Name);
        Assert.True(new System.Security.Claims.ClaimsPrincipal(second.ClaimsIdentity).IsInRole(SlotRoles.Checkout));
        Assert.NotSame(first.ClaimsIdentity, second.ClaimsIdentity);
        second.ClaimsIdentity.AddClaim(new System.Security.Claims.Claim(SlotClaims.Role, SlotRoles.Planner));
        var third = await cache.ValidateTokenAsync(token, Rules(clock));
        Assert.False(new System.Security.Claims.ClaimsPrincipal(third.ClaimsIdentity).IsInRole(SlotRoles.Planner));
    }

    [Fact]
    public async Task A_remembered_token_is_refused_once_it_expires()
    {
        var (clock, cache, token) = await RememberedAsync(TimeSpan.FromMinutes(2));

        clock.Now += TimeSpan.FromMinutes(2) + TimeSpan.FromSeconds(1);
        var late = await cache.ValidateTokenAsync(token, Rules(clock));

        Assert.False(late.IsValid);
        Assert.Equal(0, cache.Count);
    }

    [Fact]
    public async Task A_token_is_remembered_for_at_most_the_maximum_age_then_validated_again()
    {
        var (clock, cache, token) = await RememberedAsync(TimeSpan.FromHours(1));

        // The issuer's key changes after the maximum age: the token is checked again, with the new key, and refused.
        clock.Now += ValidatedTokenCache.MaximumAge + TimeSpan.FromSeconds(1);
        var rotated = Rules(clock);
        rotated.IssuerSigningKey = new SymmetricSecurityKey(SlotTokens.NewKey());

        Assert.False((await cache.ValidateTokenAsync(token, rotated)).IsValid);
    }

    [Fact]
    public async Task Forged_edited_and_malformed_tokens_are_refused_and_not_remembered()
    {
        var clock = new Clock(DateTimeOffset.UtcNow);
        var cache = ValidatedTokenCache.ForJwt(clock);
        var good = SlotTokens.Issue(Key, "shop", [SlotRoles.Checkout], TimeSpan.FromHours(1), issuedAt: clock.Now.UtcDateTime);
        Assert.True((await cache.ValidateTokenAsync(good, Rules(clock))).IsValid);

        var parts = good.Split('.');
        var edited = parts[0] + "." + parts[1] + "x." + parts[2];
        var forged = SlotTokens.Issue(SlotTokens.NewKey(), "shop", [SlotRoles.Planner], TimeSpan.FromHours(1), issuedAt: clock.Now.UtcDateTime);
        foreach (var bad in new[] { edited, forged, good + "x", "not-a-jwt" })
            Assert.False((await cache.ValidateTokenAsync(bad, Rules(clock))).IsValid, bad);
        Assert.Equal(1, cache.Count);
    }

    [Fact]
    public async Task The_cache_never_holds_more_than_its_capacity()
    {
        var clock = new Clock(DateTimeOffset.UtcNow);
        var cache = new ValidatedTokenCache(new Microsoft.IdentityModel.JsonWebTokens.JsonWebTokenHandler { MapInboundClaims = false }, clock, capacity: 3);
        for (var i = 0; i < 5; i++)
        {
            var token = SlotTokens.Issue(Key, $"caller-{i}", [SlotRoles.Checkout], TimeSpan.FromHours(1), issuedAt: clock.Now.UtcDateTime);
            Assert.True((await cache.ValidateTokenAsync(token, Rules(clock))).IsValid);
        }
        Assert.Equal(3, cache.Count);
    }
}
