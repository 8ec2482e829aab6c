namespace StreamHealth.Host.Verbs;

/// <summary>A command line the user got wrong; reported as one line, exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>Tiny "--name value" / "--flag" parser: the verbs take a handful of options each.</summary>
internal sealed class Args
{
    private readonly Dictionary<string, string?> _options = new(StringComparer.Ordinal);
    public List<string> Positional { get; } = [];

    public Args(string[] args, params string[] flags)
    {
        for (var i = 0; i < args.Length; i++)
        {
            var a = args[i];
            if (!a.StartsWith("--", StringComparison.Ordinal)) { Positional.Add(a); continue; }
            if (flags.Contains(a)) { _options[a] = null; continue; }
            if (i + 1 >= args.Length) throw new UsageException($"option {a} needs a value");
            _options[a] = args[++i];
        }
    }

    public bool Has(string name) => _options.ContainsKey(name);

    public string? Get(string name) => _options.GetValueOrDefault(name);

    public int GetInt(string name, int fallback) =>
        _options.TryGetValue(name, out var v) && v is not null
            ? int.TryParse(v, out var n) && n >= 0 ? n : throw new UsageException($"option {name} = '{v}' is not a non-negative number")
            : fallback;
}
