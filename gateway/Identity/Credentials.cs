using StreamHealth.Runtime.Validation;

namespace StreamHealth.Gateway.Identity;

/// <summary>The rules an email address and a password must meet. Sizes are capped before any work is done on a value,
/// so an oversized one costs nothing but its bytes.</summary>
public static class Credentials
{
    /// <summary>RFC 5321's longest path; anything longer received is refused before it is normalised.</summary>
    public const int MaxEmailLength = 254;
    public const int MinPasswordLength = 8;
    /// <summary>PBKDF2 hashes any length, but a megabyte password is a denial-of-service, not a password.</summary>
    public const int MaxPasswordLength = 128;
    public const string PasswordRuleText = "8-128 characters with an upper-case letter, a digit and a special character (punctuation or symbol)";

    /// <summary>The normalised address (full-width forms folded, trimmed, lower case), or the problem naming why not.
    /// Full-width letters, digits and punctuation ('ｅ', '＠', what East Asian keyboards type) become their ASCII
    /// selves; anything else that is not ASCII (Cyrillic 'а' beside Latin 'a', …) is refused rather than stored, so two
    /// accounts can never differ by a look-alike letter. (The gateway runs with invariant globalization, where
    /// string.Normalize has no Unicode tables; the fold is explicit for that reason.)</summary>
    public static string? NormaliseEmail(string? raw, out string normalised)
    {
        normalised = "";
        if (string.IsNullOrWhiteSpace(raw)) return "email is required";
        if (raw.Length > MaxEmailLength) return $"email is {raw.Length} characters; at most {MaxEmailLength} are accepted";
        if (InputRules.FindForbiddenChar(raw) >= 0 || raw.Any(char.IsControl)) return "email contains a control character or an unpaired surrogate";
        var email = FoldFullWidth(raw).Trim().ToLowerInvariant();
        if (email.Length > MaxEmailLength) return $"email is longer than {MaxEmailLength} characters once normalised";
        if (email.Any(c => c > 0x7E || c < 0x21))
            return "email must be plain ASCII letters, digits and punctuation without spaces (internationalised addresses and look-alike letters " +
                   "are refused; write an internationalised domain in its xn-- form)";
        var at = email.IndexOf('@');
        if (at <= 0 || at != email.LastIndexOf('@') || at == email.Length - 1) return "email must have the form name@domain";
        var local = email[..at];
        var domain = email[(at + 1)..];
        if (local.Length > 64) return "the part of email before @ is longer than 64 characters";
        if (local.StartsWith('.') || local.EndsWith('.') || local.Contains("..") || local.Any(c => !(char.IsAsciiLetterOrDigit(c) || "!#$%&'*+/=?^_`{|}~.-".Contains(c))))
            return "the part of email before @ has a character or dot placement an address may not have";
        var labels = domain.Split('.');
        if (labels.Length < 2 || labels.Any(l => l.Length is 0 or > 63 || l.StartsWith('-') || l.EndsWith('-') || l.Any(c => !(char.IsAsciiLetterOrDigit(c) || c == '-'))))
            return "the domain of email must be dot-separated labels of letters, digits and hyphens (e.g. example.org)";
        normalised = email;
        return null;
    }

    /// <summary>The password as hashed (exactly as sent), or the problem.</summary>
    public static string? CheckPassword(string? raw, out string normalised)
    {
        normalised = "";
        if (string.IsNullOrEmpty(raw)) return "password is required: " + PasswordRuleText;
        if (raw.Length > MaxPasswordLength) return $"password is {raw.Length} characters; at most {MaxPasswordLength} are accepted";
        if (InputRules.FindForbiddenChar(raw) >= 0 || raw.Any(char.IsControl)) return "password contains a control character or an unpaired surrogate";
        var password = raw;
        if (password.Length < MinPasswordLength) return $"password is {password.Length} characters; it must be " + PasswordRuleText;
        if (!password.Any(char.IsUpper)) return "password has no upper-case letter; it must be " + PasswordRuleText;
        if (!password.Any(char.IsDigit)) return "password has no digit; it must be " + PasswordRuleText;
        if (!password.Any(c => char.IsPunctuation(c) || char.IsSymbol(c))) return "password has no special character; it must be " + PasswordRuleText;
        normalised = password;
        return null;
    }

    /// <summary>U+FF01-U+FF5E are ASCII 0x21-0x7E in full width, U+3000 a full-width space (Unicode's compatibility mappings).</summary>
    private static string FoldFullWidth(string value) => string.Create(value.Length, value, static (span, source) =>
    {
        for (var i = 0; i < source.Length; i++)
        {
            var c = source[i];
            span[i] = c switch
            {
                >= '\uFF01' and <= '\uFF5E' => (char)(c - 0xFEE0),
                '\u3000' => ' ',
                _ => c,
            };
        }
    });
}
