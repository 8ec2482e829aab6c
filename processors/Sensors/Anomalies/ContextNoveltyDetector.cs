namespace StreamHealth.Sensors.Anomalies;

/// <summary>Settings of <see cref="ContextNoveltyDetector"/>. The defaults are the ones scored on NAB (RESULTS
/// "Sensor anomalies: NAB"), except the range, which belongs to the series.</summary>
public sealed record ContextNoveltyOptions
{
    /// <summary>The range the series is expected to stay in, known before the first reading: on NAB each file's
    /// minimum and maximum (NAB hands its detectors inputMin and inputMax), in a pipeline the quantity's plausible range.
    /// Readings outside it are still scored (they get facts of their own).</summary>
    public double Minimum { get; init; }

    public double Maximum { get; init; } = 1.0;

    /// <summary>The range is cut into 2^LevelBits − 1 equal steps; a level is described by its binary digits, one fact
    /// per digit, so neighbouring levels share facts and a context learned on one level partly matches the next.</summary>
    public int LevelBits { get; init; } = 3;

    /// <summary>How many of the contexts confirmed at a reading (the most often confirmed first) join the description of
    /// the next one: they carry the history, so the memory holds sequences of any length without a fixed order.</summary>
    public int MaxActiveContexts { get; init; } = 30;

    /// <summary>A partial match of a known context becomes a new, more general context only when it keeps at most this
    /// many facts of what came before (longer ones are too specific to recur and only grow the memory).</summary>
    public int MaxLeftFacts { get; init; } = 7;

    /// <summary>For <c>RestReadings</c> readings after a score of at least <see cref="SuppressAbove"/>, scores are 0:
    /// one event is reported once, not at every reading while the series settles. Also the first RestReadings of a
    /// series: the memory starts empty and everything is new.</summary>
    public int RestReadings { get; init; } = 188;

    public double SuppressAbove { get; init; } = 0.7;

    public void Validate()
    {
        if (!double.IsFinite(Minimum)) throw new ArgumentOutOfRangeException(nameof(Minimum), Minimum, "a finite number");
        if (!double.IsFinite(Maximum) || Maximum < Minimum) throw new ArgumentOutOfRangeException(nameof(Maximum), Maximum, "a finite number, not below Minimum");
        if (!double.IsFinite(Maximum - Minimum)) throw new ArgumentOutOfRangeException(nameof(Maximum), Maximum, "Maximum − Minimum overflows");
        if (LevelBits is < 1 or > 16) throw new ArgumentOutOfRangeException(nameof(LevelBits), LevelBits, "1-16");
        if (MaxActiveContexts is < 1 or > 1000) throw new ArgumentOutOfRangeException(nameof(MaxActiveContexts), MaxActiveContexts, "1-1000");
        if (MaxLeftFacts < 1) throw new ArgumentOutOfRangeException(nameof(MaxLeftFacts), MaxLeftFacts, "at least 1");
        if (RestReadings < 0) throw new ArgumentOutOfRangeException(nameof(RestReadings), RestReadings, "not negative");
        if (!(SuppressAbove > 0 && SuppressAbove <= 1)) throw new ArgumentOutOfRangeException(nameof(SuppressAbove), SuppressAbove, "in (0, 1]");
    }
}

/// <summary>
/// A streaming anomaly detector for one series, after the idea of CAD OSE (Smirnov's contextual anomaly detector,
/// open-source edition, 69.9 on NAB): an anomaly is a <em>sequence not seen before</em>, not a value far from a mean.
/// Our own formulation in C# (no code taken from it).
/// <para>Each reading is described by facts (the binary digits of its level on the expected range). A context pairs
/// what came before (the previous reading's facts plus the contexts confirmed at it, which carry the longer history)
/// with what followed (the current facts). At each reading: the contexts whose "before" part is all present predicted
/// their "after" part; the share of those predictions that came true is <c>confirmed</c>. When the exact
/// (before, now) pair is new it is remembered, and so are the partial matches it makes with remembered pairs (the
/// common facts on both sides, a generalisation); the share of those that were new is <c>novelty</c>. The score is
/// (1 − confirmed + novelty) / 2 in [0, 1], followed by a rest period after a high score.</para>
/// <para>Memory grows with the number of distinct contexts (the series' variety, not its length once learned). Cost
/// per reading: the contexts whose "before" part is all present; a reading that makes a new pair also walks every
/// remembered context sharing a fact with what came before, which is what makes novelty costlier than routine.
/// Allocates only when it remembers something new. The threshold is chosen by whoever consumes the score (NAB: per
/// profile over the corpus).</para>
/// </summary>
public sealed class ContextNoveltyDetector
{
    private const int BelowRangeFact = 1 << 20;     // a reading below Minimum (digit facts stay below 2 × 16)
    private const int AboveRangeFact = BelowRangeFact + 1;
    private const int ContextFactBase = 1 << 21;    // "context c was confirmed at the previous reading" = base + c

    /// <summary>One side of contexts (the facts before, or the facts now), shared by every context with that side.</summary>
    private sealed class Side(int[] facts, bool before)
    {
        public readonly int[] Facts = facts;
        public int Matched;                                          // facts present in the group last matched
        public readonly Dictionary<int, int>? Contexts = before ? new Dictionary<int, int>() : null;   // after side → context id
    }

    private readonly ContextNoveltyOptions _options;
    private readonly double _step;
    private readonly int _topLevel;
    private readonly List<Side> _before = [], _after = [];
    private readonly Dictionary<ulong, int> _beforeIds = new(), _afterIds = new();
    private readonly Dictionary<int, List<int>> _beforeByFact = new(), _afterByFact = new();
    private readonly Dictionary<int, List<int>> _beforeByLargestFact = new();   // each before side once: its rarest fact
    private readonly List<int> _beforeMatched = [], _afterMatched = [];     // sides with Matched > 0
    private readonly List<int> _confirmations = [];                         // per context
    private readonly List<bool> _seenWhole = [];    // per context: once an exact (before, now) pair, not only a generalisation
    private readonly List<int> _confirmed = [];
    private readonly List<(int Before, int After)> _candidates = [];
    private readonly HashSet<(ulong, ulong)> _distinct = [];
    private readonly Comparison<int> _mostConfirmedFirst;
    private int[] _group = new int[64], _nextGroup = new int[64], _scratchBefore = new int[64];
    private int _groupLength;
    private int _beforeSidesAtGroup;     // before sides that existed when _group was formed: newer ones did not match it
    private int _sinceHigh;              // readings since the last score ≥ SuppressAbove (the start counts as one)

    public ContextNoveltyDetector(ContextNoveltyOptions options)
    {
        options.Validate();
        _options = options;
        _topLevel = (1 << options.LevelBits) - 1;
        var steps = (double)_topLevel;
        var range = options.Maximum - options.Minimum;
        _step = range > 0 ? range / steps : 1.0;
        _mostConfirmedFirst = (a, b) => _confirmations[a] != _confirmations[b] ? _confirmations[b].CompareTo(_confirmations[a]) : a.CompareTo(b);
    }

    /// <summary>Scores the next reading of the series, in [0, 1]. Non-finite values are the caller's to reject (they
    /// are data errors, not anomalies): they throw here rather than poison the memory.</summary>
    public double Update(double value)
    {
        if (!double.IsFinite(value)) throw new ArgumentOutOfRangeException(nameof(value), value, "a reading must be a finite number");
        Span<int> facts = stackalloc int[16];
        facts = facts[..Describe(value, facts)];
        var before = _group.AsSpan(0, _groupLength);

        _distinct.Clear();
        var isNew = false;
        var newContext = -1;
        if (before.Length > 0)
        {
            (newContext, isNew) = Remember(before, facts, wholePair: true);
            _distinct.Add((Hash(before), Hash(facts)));
        }
        Match(_afterByFact, _after, _afterMatched, facts, _after.Count);

        // Which predictions came true, and (only for a new pair) which partial matches could generalise it.
        var predicted = 0;
        _confirmed.Clear();
        _candidates.Clear();
        if (isNew)
        {
            Match(_beforeByFact, _before, _beforeMatched, before, _beforeSidesAtGroup);
            foreach (var b in _beforeMatched)
                predicted += _before[b].Matched == _before[b].Facts.Length ? Predict(b, true, newContext) : Generalise(b, newContext);
        }
        else
        {
            // Routine: only the before sides wholly present matter; each is filed once, under its largest fact.
            foreach (var f in before)
            {
                if (!_beforeByLargestFact.TryGetValue(f, out var sides)) continue;
                foreach (var b in sides)
                    if (b < _beforeSidesAtGroup && IsSubset(_before[b].Facts, before)) predicted += Predict(b, false, -1);
            }
        }
        var confirmed = predicted > 0 ? (double)_confirmed.Count / predicted : 0.0;

        var created = 0;
        Span<int> right = stackalloc int[facts.Length];
        if (_scratchBefore.Length < before.Length) _scratchBefore = new int[before.Length];
        foreach (var (b, a) in _candidates)
        {
            var left = _scratchBefore.AsSpan(0, Intersect(_before[b].Facts, before, _scratchBefore));
            var now = right[..Intersect(_after[a].Facts, facts, right)];
            if (_distinct.Add((Hash(left), Hash(now))) && Remember(left, now, wholePair: false).Created) created++;
        }
        var novelty = isNew ? (created + 1.0) / _distinct.Count : 0.0;

        NextGroup(facts);
        var score = (1 - confirmed + novelty) / 2;
        // Any high score, even a suppressed one, restarts the rest: a new regime keeps producing news for a while and
        // is one event.
        var suppressed = _sinceHigh < _options.RestReadings;
        _sinceHigh = score >= _options.SuppressAbove ? 0 : Math.Min(_sinceHigh + 1, int.MaxValue - 1);
        return suppressed ? 0 : score;
    }

    /// <summary>The reading's facts: each binary digit of its level as (position, digit). A reading outside the
    /// expected range is one fact of its own (below, or above): described by digits it would share facts with an
    /// in-range level (8 = 1000 contains every fact of 0 = 000), so a prediction of that level would count as confirmed.</summary>
    private int Describe(double value, Span<int> facts)
    {
        var scaled = Math.Floor((value - _options.Minimum) / _step);
        if (scaled < 0) { facts[0] = BelowRangeFact; return 1; }
        if (scaled > _topLevel) { facts[0] = AboveRangeFact; return 1; }
        var level = (int)scaled;
        for (var i = 0; i < _options.LevelBits; i++) facts[i] = 2 * i + ((level >> i) & 1);
        return _options.LevelBits;
    }

    /// <summary>A context whose before side is wholly present predicted its after side; counts the predictions.</summary>
    private int Predict(int b, bool isNew, int newContext)
    {
        var side = _before[b];
        var count = 0;
        foreach (var (a, c) in side.Contexts!)
        {
            if (c == newContext) continue;             // the pair just remembered predicted nothing
            count++;
            var matched = _after[a].Matched;
            if (matched == 0) continue;
            if (matched == _after[a].Facts.Length) { _confirmations[c]++; _confirmed.Add(c); }
            else if (isNew && _seenWhole[c] && side.Matched <= _options.MaxLeftFacts) _candidates.Add((b, a));
        }
        return count;
    }

    /// <summary>A before side only partly present predicts nothing, but with an after side partly present it is a
    /// candidate generalisation of the new pair. Returns 0 predictions.</summary>
    private int Generalise(int b, int newContext)
    {
        var side = _before[b];
        if (side.Matched > _options.MaxLeftFacts) return 0;
        foreach (var (a, c) in side.Contexts!)
            if (c != newContext && _seenWhole[c] && _after[a].Matched > 0) _candidates.Add((b, a));
        return 0;
    }

    /// <summary>The next reading's before side: this reading's facts and its most confirmed contexts, sorted.</summary>
    private void NextGroup(ReadOnlySpan<int> facts)
    {
        _confirmed.Sort(_mostConfirmedFirst);
        var take = Math.Min(_options.MaxActiveContexts, _confirmed.Count);
        if (_nextGroup.Length < facts.Length + take) _nextGroup = new int[facts.Length + take];
        facts.CopyTo(_nextGroup);
        for (var i = 0; i < take; i++) _nextGroup[facts.Length + i] = ContextFactBase + _confirmed[i];
        Array.Sort(_nextGroup, facts.Length, take);    // context facts are all above the reading's facts
        (_group, _nextGroup) = (_nextGroup, _group);
        _groupLength = facts.Length + take;
        _beforeSidesAtGroup = _before.Count;
    }

    private (int Id, bool Created) Remember(ReadOnlySpan<int> before, ReadOnlySpan<int> after, bool wholePair)
    {
        var b = SideId(before, isBefore: true);
        var a = SideId(after, isBefore: false);
        var contexts = _before[b].Contexts!;
        if (contexts.TryGetValue(a, out var c))
        {
            if (wholePair) _seenWhole[c] = true;
            return (c, false);
        }
        c = _confirmations.Count;
        _confirmations.Add(0);
        _seenWhole.Add(wholePair);
        contexts[a] = c;
        return (c, true);
    }

    private int SideId(ReadOnlySpan<int> facts, bool isBefore)
    {
        var (ids, sides, byFact) = isBefore ? (_beforeIds, _before, _beforeByFact) : (_afterIds, _after, _afterByFact);
        var hash = Hash(facts);
        if (ids.TryGetValue(hash, out var id)) return id;
        id = sides.Count;
        sides.Add(new Side(facts.ToArray(), isBefore));
        ids[hash] = id;
        foreach (var f in facts) File(byFact, f, id);
        if (isBefore) File(_beforeByLargestFact, facts[^1], id);
        return id;

        static void File(Dictionary<int, List<int>> index, int fact, int id)
        {
            if (!index.TryGetValue(fact, out var list)) index[fact] = list = [];
            list.Add(id);
        }
    }

    /// <summary>Counts, for every side (id below <paramref name="limit"/>), how many of its facts are in the group.</summary>
    private static void Match(Dictionary<int, List<int>> byFact, List<Side> sides, List<int> matched, ReadOnlySpan<int> group, int limit)
    {
        foreach (var s in matched) sides[s].Matched = 0;
        matched.Clear();
        foreach (var f in group)
        {
            if (!byFact.TryGetValue(f, out var list)) continue;
            foreach (var s in list)
            {
                if (s >= limit) break;                 // filed in id order
                if (sides[s].Matched++ == 0) matched.Add(s);
            }
        }
    }

    private static bool IsSubset(int[] small, ReadOnlySpan<int> sorted)
    {
        var j = 0;
        foreach (var f in small)
        {
            while (j < sorted.Length && sorted[j] < f) j++;
            if (j == sorted.Length || sorted[j] != f) return false;
            j++;
        }
        return true;
    }

    private static int Intersect(int[] a, ReadOnlySpan<int> b, Span<int> into)
    {
        int i = 0, j = 0, n = 0;
        while (i < a.Length && j < b.Length)
        {
            if (a[i] == b[j]) { into[n++] = a[i]; i++; j++; }
            else if (a[i] < b[j]) i++;
            else j++;
        }
        return n;
    }

    /// <summary>A 64-bit hash of a sorted fact set; a side is known by it (a collision would merge two sides, as likely
    /// as two of 2^64 values meeting).</summary>
    private static ulong Hash(ReadOnlySpan<int> facts)
    {
        var h = 0x9E3779B97F4A7C15UL ^ (ulong)facts.Length;
        foreach (var f in facts)
        {
            h ^= (uint)f;
            h *= 0xBF58476D1CE4E5B9UL;
            h ^= h >> 31;
        }
        return h;
    }
}
