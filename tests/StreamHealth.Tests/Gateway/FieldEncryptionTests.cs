using System.Buffers.Text;
using System.Security.Cryptography;
using Microsoft.Extensions.Configuration;
using StreamHealth.Gateway.Identity;

namespace StreamHealth.Tests.Gateway;

/// <summary>The field encryption on its own: envelopes, the binding to person and field, keys and rotation.</summary>
public sealed class FieldEncryptionTests
{
    private static readonly byte[] KeyA = RandomNumberGenerator.GetBytes(32);
    private static readonly byte[] KeyB = RandomNumberGenerator.GetBytes(32);
    private const string User = "0123456789abcdef0123456789abcdef";
    private const string Field = "medical_history";

    private static FieldEncryption With(string active, params (string Id, byte[] Key)[] keys) =>
        new(keys.ToDictionary(k => k.Id, k => k.Key), active);

    [Fact]
    public void A_value_round_trips_in_a_v1_envelope_naming_its_key_with_a_fresh_nonce_each_time()
    {
        var encryption = With("a", ("a", KeyA));
        const string history = "Asthma since 2001;\n\tpenicillin allergy — 日本語 😀";
        var first = encryption.Encrypt(history, User, Field);
        var second = encryption.Encrypt(history, User, Field);
        Assert.StartsWith("v1.a.", first);
        Assert.Equal("a", FieldEncryption.KeyIdOf(first));
        Assert.NotEqual(first, second);   // random nonce: equal values do not give equal envelopes
        Assert.DoesNotContain("Asthma", first);
        var payload = Base64Url.DecodeFromChars(first.AsSpan("v1.a.".Length));
        Assert.Equal(FieldEncryption.NonceBytes + System.Text.Encoding.UTF8.GetByteCount(history) + FieldEncryption.TagBytes, payload.Length);
        Assert.Equal(history, encryption.Decrypt(first, User, Field));
        Assert.Equal("", encryption.Decrypt(encryption.Encrypt("", User, Field), User, Field));
    }

    [Fact]
    public void A_tampered_envelope_fails_clearly()
    {
        var encryption = With("a", ("a", KeyA));
        var envelope = encryption.Encrypt("1987-06-05", User, "date_of_birth");
        var payload = Base64Url.DecodeFromChars(envelope.AsSpan("v1.a.".Length));
        foreach (var index in new[] { 0, FieldEncryption.NonceBytes, payload.Length - 1 })   // nonce, ciphertext, tag
        {
            var altered = payload.ToArray();
            altered[index] ^= 0x01;
            var e = Assert.Throws<FieldDecryptionException>(() => encryption.Decrypt("v1.a." + Base64Url.EncodeToString(altered), User, "date_of_birth"));
            Assert.Contains("does not authenticate", e.Message);
            Assert.DoesNotContain("1987", e.Message);
        }
        foreach (var malformed in new[] { "", "1987-06-05", "v2.a.AAAA", "v1.a", "v1.a.b.c", "v1.a.!!!not-base64!!!", "v1.a.AAAA", "v1.bad key.AAAA" })
            Assert.Throws<FieldDecryptionException>(() => encryption.Decrypt(malformed, User, "date_of_birth"));
    }

    [Fact]
    public void A_value_copied_to_another_person_or_field_does_not_decrypt()
    {
        var encryption = With("a", ("a", KeyA));
        var envelope = encryption.Encrypt("Type 1 diabetes", User, Field);
        Assert.Contains("copied from another person or field",
            Assert.Throws<FieldDecryptionException>(() => encryption.Decrypt(envelope, "fedcba9876543210fedcba9876543210", Field)).Message);
        Assert.Throws<FieldDecryptionException>(() => encryption.Decrypt(envelope, User, "date_of_birth"));
    }

    [Fact]
    public void An_unknown_key_id_fails_naming_it_and_the_setting()
    {
        var envelope = With("a", ("a", KeyA)).Encrypt("x", User, Field);
        var e = Assert.Throws<FieldDecryptionException>(() => With("b", ("b", KeyB)).Decrypt(envelope, User, Field));
        Assert.Contains("key 'a'", e.Message);
        Assert.Contains("Gateway:Encryption:Keys", e.Message);
        // Same id, different key: the tag does not verify.
        Assert.Throws<FieldDecryptionException>(() => With("a", ("a", KeyB)).Decrypt(envelope, User, Field));
    }

    [Fact]
    public void Rotation_old_keys_decrypt_and_the_active_one_encrypts()
    {
        var before = With("a", ("a", KeyA));
        var sealedWithA = before.Encrypt("history", User, Field);
        var after = With("b", ("a", KeyA), ("b", KeyB));
        Assert.Equal("history", after.Decrypt(sealedWithA, User, Field));
        var resealed = after.Encrypt(after.Decrypt(sealedWithA, User, Field), User, Field);
        Assert.Equal("b", FieldEncryption.KeyIdOf(resealed));
        Assert.Equal("history", With("b", ("b", KeyB)).Decrypt(resealed, User, Field));
    }

    [Fact]
    public void Keys_of_the_wrong_size_ids_that_break_the_envelope_and_an_absent_active_key_are_refused()
    {
        Assert.Throws<ArgumentException>(() => With("a", ("a", new byte[16])));
        Assert.Throws<ArgumentException>(() => With("a.b", ("a.b", KeyA)));
        Assert.Throws<ArgumentException>(() => With("c", ("a", KeyA)));
    }

    [Fact]
    public void Configuration_names_a_missing_or_bad_key_and_refuses_the_development_key_outside_development()
    {
        string Errors(bool development, params (string Key, string Value)[] settings)
        {
            var configuration = new Microsoft.Extensions.Configuration.ConfigurationBuilder()
                .AddInMemoryCollection(settings.Select(s => new KeyValuePair<string, string?>(s.Key, s.Value))
                    .Append(new("Gateway:Identity:SigningKey", "a-test-signing-key-0123456789-0123456789"))).Build();
            try
            {
                StreamHealth.Gateway.GatewayOptions.Bind(configuration, development);
                return "";
            }
            catch (StreamHealth.Runtime.Configuration.ConfigurationException e) { return e.Message; }
        }
        Assert.Contains("Gateway:Encryption:ActiveKeyId is not set", Errors(true));
        Assert.Contains("not the base64 of 32 bytes", Errors(true, ("Gateway:Encryption:Keys:k1", "c2hvcnQ="), ("Gateway:Encryption:ActiveKeyId", "k1")));
        Assert.Contains("no such key", Errors(true, ("Gateway:Encryption:Keys:k1", Convert.ToBase64String(KeyA)), ("Gateway:Encryption:ActiveKeyId", "k2")));
        var dev = new[] { ("Gateway:Encryption:Keys:local-dev", StreamHealth.Gateway.GatewayEncryptionOptions.DevelopmentKey), ("Gateway:Encryption:ActiveKeyId", "local-dev") };
        Assert.Equal("", Errors(true, dev));
        Assert.Contains("local development key", Errors(false, dev));
        Assert.Equal("", Errors(false, ("Gateway:Encryption:Keys:k1", Convert.ToBase64String(KeyA)), ("Gateway:Encryption:ActiveKeyId", "k1")));
        // The near cache's settings are named too (not a key, but the same Bind).
        Assert.Contains("Gateway:NearCache:Seconds = -1: must be 0-3600", Errors(true, dev.Append(("Gateway:NearCache:Seconds", "-1")).ToArray()));
        Assert.Contains("Gateway:NearCache:MaxPeople = 0", Errors(true, dev.Append(("Gateway:NearCache:MaxPeople", "0")).ToArray()));
    }
}
