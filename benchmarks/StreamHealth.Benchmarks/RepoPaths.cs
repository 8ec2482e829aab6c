namespace StreamHealth.Benchmarks;

/// <summary>Where the checkout is, found from the running binary (BenchmarkDotNet and the harnesses run from bin/).</summary>
internal static class RepoPaths
{
    /// <summary>The folder holding StreamHealth.sln above this binary.</summary>
    public static string Root { get; } = FindRoot();

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "StreamHealth.sln"))) return dir.FullName;
        throw new InvalidOperationException("StreamHealth.sln not found above " + AppContext.BaseDirectory);
    }
}
