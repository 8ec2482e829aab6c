using System.Text.RegularExpressions;
using Npgsql;

namespace StreamHealth.Runtime.Sinks;

/// <summary>A PostgreSQL sink's table by name, for re-materialising a sink into a table beside its own (a replay checked
/// against the live table before anyone switches to it).</summary>
public static partial class SinkTables
{
    /// <summary><paramref name="table"/> when it is a plain schema-qualified name (it is spliced into the sink's statement),
    /// else an <see cref="ArgumentException"/> naming it.</summary>
    public static string Checked(string table) =>
        QualifiedName().IsMatch(table) ? table
            : throw new ArgumentException($"table '{table}' is not a schema-qualified name of lower-case letters, digits and '_' (e.g. weights.measurements_replay)");

    /// <summary>Creates <paramref name="copy"/> with <paramref name="original"/>'s columns, defaults, constraints and indexes
    /// (so the sink's ON CONFLICT finds its key) unless it exists; true when it was created.</summary>
    public static bool CreateLike(NpgsqlDataSource db, string original, string copy)
    {
        Checked(original);
        Checked(copy);
        using var connection = db.OpenConnection();
        using (var exists = new NpgsqlCommand("SELECT to_regclass(@t) IS NOT NULL", connection))
        {
            exists.Parameters.AddWithValue("t", copy);
            if ((bool)exists.ExecuteScalar()!) return false;
        }
        using var create = new NpgsqlCommand(
            $"CREATE TABLE {copy} (LIKE {original} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)", connection);
        create.ExecuteNonQuery();
        return true;
    }

    [GeneratedRegex("^[a-z_][a-z0-9_]{0,62}\\.[a-z_][a-z0-9_]{0,62}$")]
    private static partial Regex QualifiedName();
}
