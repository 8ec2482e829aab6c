namespace StreamHealth.Forecast.Quantiles;

/// <summary>Quantiles of an equal-weight mixture of Gaussians — a request's predictive distribution at one step,
/// one component per Monte Carlo sample: F(y) = (1/N) Σᵢ Φ((y − μᵢ)/σᵢ), and the q-quantile is the root of F(y) = q.
/// F is continuous and strictly increasing, so the root is unique; it is found by Halley's method (Newton's with the
/// curvature, which F'' gives almost for free) from the moment-matched Gaussian's quantile, safeguarded by a bracket
/// that every step narrows (a step that leaves the bracket becomes a bisection). Pure and allocation-free; μ and σ in mg/dL.</summary>
public static class MixtureQuantiles
{
    /// <summary>Where the root search stops: after a step this small (mg/dL) the error is far below what a float holds
    /// (Halley's method converges cubically, so the remaining error is of the order of this cubed over σ²).</summary>
    public const double ToleranceMgDl = 1e-4;
    /// <summary>σ below this is taken as this: a zero-width component would make F a step function.</summary>
    public const double MinSdMgDl = 1e-6;
    private const int MaxIterations = 100;
    /// <summary>Beyond μ ± 8.5σ a component's tail mass is below 1e-17: the bracket holds every quantile in (1e-16, 1 − 1e-16).</summary>
    private const double BracketSds = 8.5;

    /// <summary>F(y) for components (μᵢ, σᵢ).</summary>
    public static double Cdf(ReadOnlySpan<double> means, ReadOnlySpan<double> sds, double y)
    {
        var sum = 0.0;
        for (var i = 0; i < means.Length; i++) sum += Gaussian.Cdf((y - means[i]) / Math.Max(sds[i], MinSdMgDl));
        return sum / means.Length;
    }

    /// <summary>The <paramref name="level"/>-quantile of the mixture. <paramref name="levelZ"/> = Φ⁻¹(level), passed in
    /// because callers solve the same levels millions of times (<see cref="Gaussian.Quantile"/> once per level).</summary>
    public static double Quantile(ReadOnlySpan<double> means, ReadOnlySpan<double> sds, double level, double levelZ)
    {
        var n = means.Length;
        if (n == 0) throw new ArgumentException("a mixture needs at least one component", nameof(means));
        if (n == 1) return means[0] + Math.Max(sds[0], MinSdMgDl) * levelZ;

        // Moment-matched start: the mixture's own mean and variance. For the near-identical components of
        // MC dropout this is within a fraction of σ of the root, and Newton needs 2-4 steps from there.
        double lo = double.PositiveInfinity, hi = double.NegativeInfinity, sum = 0, sumSquares = 0;
        for (var i = 0; i < n; i++)
        {
            var m = means[i];
            var s = Math.Max(sds[i], MinSdMgDl);
            lo = Math.Min(lo, m - BracketSds * s);
            hi = Math.Max(hi, m + BracketSds * s);
            sum += m;
            sumSquares += s * s + m * m;
        }
        var mean = sum / n;
        var y = mean + Math.Sqrt(Math.Max(sumSquares / n - mean * mean, 0)) * levelZ;
        if (!(y > lo && y < hi)) y = 0.5 * (lo + hi);

        for (var iteration = 0; iteration < MaxIterations; iteration++)
        {
            // F, F' = f and F'' at y in one pass: f = Σ φ(zᵢ)/σᵢ, F'' = −Σ zᵢ φ(zᵢ)/σᵢ² (all over n).
            double cdf = 0, pdf = 0, slope = 0;
            for (var i = 0; i < n; i++)
            {
                var inverseSd = 1 / Math.Max(sds[i], MinSdMgDl);
                var z = (y - means[i]) * inverseSd;
                cdf += Gaussian.CdfAndPdf(z, out var density);
                var weighted = density * inverseSd;
                pdf += weighted;
                slope -= z * weighted * inverseSd;
            }
            var excess = cdf - level * n;   // n × (F(y) − q)
            if (excess == 0) return y;
            if (excess < 0) lo = y; else hi = y;
            // Halley's step (cubic convergence: 2-3 steps from the moment-matched start); Newton's if Halley's
            // denominator is not safely positive.
            var denominator = 2 * pdf * pdf - excess * slope;
            var step = denominator > pdf * pdf ? 2 * excess * pdf / denominator : pdf > 0 ? excess / pdf : double.NaN;
            var next = y - step;
            // A step this small has converged: the one after it would be ~its cube. It may land exactly on the
            // bracket's edge (where y just was), so this is checked before the bracket test.
            if (Math.Abs(step) <= ToleranceMgDl) return next;
            if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);   // NaN-safe: also catches pdf = 0
            if (hi - lo <= ToleranceMgDl) return next;
            y = next;
        }
        return y;
    }
}
