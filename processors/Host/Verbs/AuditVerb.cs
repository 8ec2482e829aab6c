using System.Globalization;
using Npgsql;
using StreamHealth.Runtime.Audit;
using StreamHealth.Runtime.Configuration;

namespace StreamHealth.Host.Verbs;

/// <summary>`streamhealth audit verify|prune`: the checks and retention of the audit trail of personal data
/// (audit.events, schemas/sql/V0012__audit.sql).</summary>
public static class AuditVerb
{
    public static Task<int> RunAsync(string[] argv) => RunAsync(argv, StreamHealthOptions.Load(), Console.Out);

    /// <summary>verify: exit 0 with "OK" and the row count, 1 naming the first broken seq and why (with --witness SEQ:HASH,
    /// a row the gateway logged must still be there, unchanged: the newest rows deleted are found too). prune: deletes rows
    /// older than --older-than-days (default Audit:RetentionDays) and records the anchor; exit 0.</summary>
    public static async Task<int> RunAsync(string[] argv, StreamHealthOptions options, TextWriter output)
    {
        var verb = argv.FirstOrDefault();
        var args = new Args(argv.Length > 0 ? argv[1..] : []);
        if (args.Positional.Count > 0) throw new UsageException($"audit {verb}: unexpected argument '{args.Positional[0]}'");
        await using var db = NpgsqlDataSource.Create(options.Postgres.ConnectionString);
        switch (verb)
        {
            case "verify":
            {
                long? from = null;
                if (args.Has("--from-seq"))
                    from = long.TryParse(args.Get("--from-seq"), NumberStyles.None, CultureInfo.InvariantCulture, out var seq) && seq >= 1
                        ? seq
                        : throw new UsageException($"option --from-seq = '{args.Get("--from-seq")}' is not a seq (a number from 1)");
                AuditLog.Witness? witness = null;
                if (args.Has("--witness"))
                    witness = AuditLog.Witness.Parse(args.Get("--witness")!)
                              ?? throw new UsageException($"option --witness = '{args.Get("--witness")}' is not SEQ:HASH (a seq and 64 hex digits, as the gateway logs it)");
                AuditLog.Verdict verdict;
                try
                {
                    verdict = await AuditLog.VerifyAsync(db, from, witness);
                }
                catch (ArgumentException e)
                {
                    throw new UsageException("option --witness: " + e.Message);
                }
                output.WriteLine(verdict);
                return verdict.Intact ? 0 : 1;
            }
            case "prune":
            {
                var days = args.GetInt("--older-than-days", options.Audit.RetentionDays);
                if (days < 1) throw new UsageException("option --older-than-days must be at least 1");
                var cutoff = DateTime.UtcNow.AddDays(-days);
                var (pruned, through) = await AuditLog.PruneAsync(db, cutoff);
                var when = cutoff.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture);
                output.WriteLine(through is { } seq
                    ? $"pruned {pruned} audit rows recorded before {when} (seq through {seq}); the anchor at seq {seq} keeps the chain verifiable"
                    : $"no audit rows recorded before {when}");
                return 0;
            }
            default:
                throw new UsageException("audit needs 'verify [--from-seq N] [--witness SEQ:HASH]' or 'prune [--older-than-days N]'");
        }
    }
}
