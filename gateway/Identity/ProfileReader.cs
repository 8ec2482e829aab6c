using System.Text.Json;
using StreamHealth.Gateway.Insights;

namespace StreamHealth.Gateway.Identity;

/// <summary>Profiles through the 24-hour cache tier: <see cref="IdentityStore.FindProfileAsync"/>'s sealed profile (date of
/// birth and medical history still encrypted, so Redis never holds them in clear), dropped when the profile changes.</summary>
public sealed class ProfileReader(IdentityStore store, PersonalCache cache)
{
    private const string Variant = "sealed";

    public async Task<IdentityStore.StoredProfile?> FindAsync(string userId, CancellationToken ct)
    {
        var json = await cache.GetOrLoadJsonAsync(CacheTier.Profiles, userId, Variant, token => store.FindProfileAsync(userId, token), ct);
        return json is null ? null : JsonSerializer.Deserialize<IdentityStore.StoredProfile>(json);
    }

    /// <summary>After a profile write: the cached profile and the recommendations (personalised by age, sex and time zone) go.</summary>
    public Task ProfileChangedAsync(string userId) =>
        Task.WhenAll(cache.InvalidateAsync(CacheTier.Profiles, userId), cache.InvalidateAsync(CacheTier.Recommendations, userId));
}
