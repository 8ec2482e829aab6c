using StreamHealth.Forecast.Quantiles;

namespace StreamHealth.Tests.Forecast;

public sealed class MixtureQuantileTests
{
    private static readonly double[] Levels = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];

    [Theory]
    [InlineData(0, 0.5)]
    [InlineData(-1, 0.15865525393145707)]
    [InlineData(1.959963984540054, 0.975)]
    [InlineData(-3, 0.0013498980316300946)]
    [InlineData(-8, 6.22096057427178e-16)]
    [InlineData(-20, 2.7536241186062337e-89)]
    [InlineData(5, 0.9999997133484281)]
    public void The_normal_cdf_matches_reference_values_to_relative_1e_13(double z, double expected)
    {
        Assert.True(Math.Abs(Gaussian.Cdf(z) - expected) <= 1e-13 * expected, $"Φ({z}) = {Gaussian.Cdf(z):R}, expected {expected:R}");
    }

    [Fact]
    public void The_combined_cdf_and_pdf_agree_with_the_separate_ones_within_10_sds()
    {
        for (var z = -10.0; z <= 10; z += 0.01)
        {
            var cdf = Gaussian.CdfAndPdf(z, out var pdf);
            Assert.True(Math.Abs(cdf - Gaussian.Cdf(z)) <= 1e-13 * Math.Min(cdf, 1 - cdf) + 1e-300, $"Φ({z})");
            Assert.True(Math.Abs(pdf - Gaussian.Pdf(z)) <= 1e-15 * Gaussian.Pdf(z), $"φ({z})");
        }
    }

    [Theory]
    [InlineData(0.5, 0)]
    [InlineData(0.975, 1.959963984540054)]
    [InlineData(0.05, -1.6448536269514729)]
    [InlineData(0.25, -0.6744897501960817)]
    [InlineData(1e-10, -6.361340902404056)]
    public void The_normal_quantile_inverts_the_cdf(double p, double expected)
    {
        Assert.Equal(expected, Gaussian.Quantile(p), 1e-12);
    }

    [Theory]
    [InlineData(120, 15)]
    [InlineData(65.5, 0.8)]
    [InlineData(310, 42)]
    public void One_sample_gives_that_gaussians_quantiles(double mean, double sd)
    {
        foreach (var q in Levels)
        {
            Assert.Equal(mean + sd * Gaussian.Quantile(q), MixtureQuantiles.Quantile([mean], [sd], q, Gaussian.Quantile(q)), 1e-9);
            // The general path (several components) agrees when the components are all the same Gaussian.
            Assert.Equal(mean + sd * Gaussian.Quantile(q), MixtureQuantiles.Quantile([mean, mean, mean], [sd, sd, sd], q, Gaussian.Quantile(q)), 1e-6);
        }
    }

    [Fact]
    public void Mixture_quantiles_agree_with_a_numerically_integrated_cdf()
    {
        var random = new Random(20261123);
        for (var trial = 0; trial < 40; trial++)
        {
            // MC dropout-like (close components) for most trials, and far-apart, very unequal ones for the rest.
            var n = 1 + random.Next(12);
            var wide = trial % 4 == 3;
            var means = new double[n];
            var sds = new double[n];
            var centre = 60 + random.NextDouble() * 250;
            for (var i = 0; i < n; i++)
            {
                means[i] = centre + (wide ? random.NextDouble() * 160 - 80 : random.NextDouble() * 10 - 5);
                sds[i] = wide ? 0.5 + random.NextDouble() * 40 : 8 + random.NextDouble() * 6;
            }
            foreach (var q in Levels)
            {
                var y = MixtureQuantiles.Quantile(means, sds, q, Gaussian.Quantile(q));
                Assert.Equal(q, IntegratedCdf(means, sds, y), 1e-7);
                Assert.Equal(q, MixtureQuantiles.Cdf(means, sds, y), 1e-12);
            }
        }
    }

    [Fact]
    public void A_converged_newton_step_on_the_brackets_edge_is_the_answer_not_a_reason_to_bisect()
    {
        // Found by the test above: Newton converged onto the point that had just become the bracket's lower end, the
        // strict in-bracket test turned that into a bisection, and the search stopped 3e-3 mg/dL from the root.
        double[] means = [209.21, 203.42, 201.56, 205.61];
        double[] sds = [11.65, 13.55, 10.73, 12.79];
        Assert.Equal(0.5, MixtureQuantiles.Cdf(means, sds, MixtureQuantiles.Quantile(means, sds, 0.5, 0)), 1e-12);
    }

    [Fact]
    public void A_symmetric_bimodal_mixture_has_its_median_in_the_middle_and_quantiles_in_its_modes()
    {
        double[] means = [80, 200];
        double[] sds = [5, 5];
        Assert.Equal(140, MixtureQuantiles.Quantile(means, sds, 0.5, 0), 1e-6);
        // A quarter of the mass lies below the lower mode's mean: exactly at 80 (the upper mode adds ~0 there).
        Assert.Equal(80, MixtureQuantiles.Quantile(means, sds, 0.25, Gaussian.Quantile(0.25)), 1e-6);
    }

    [Fact]
    public void Summaries_give_monotone_bands_around_the_median_for_every_step()
    {
        const int samples = 10, horizon = 12;
        double[] levels = [0.05, 0.25, 0.75, 0.95];
        var random = new Random(7);
        var means = new float[samples * horizon];
        var sds = new float[samples * horizon];
        for (var s = 0; s < samples; s++)
            for (var h = 0; h < horizon; h++)
            {
                means[s * horizon + h] = 120 + 2 * h + (float)(random.NextDouble() * 8 - 4);
                sds[s * horizon + h] = 3 + 0.8f * h + (float)random.NextDouble();
            }
        var median = new float[horizon];
        var bands = new float[levels.Length * horizon];
        // The identity calibration (a model without a calibration block) summarises the raw mixture.
        Assert.True(ForecastCalibration.Identity(horizon).For(levels).Summarize(120, means, sds, samples, median, bands));
        for (var h = 0; h < horizon; h++)
        {
            Assert.True(bands[0 * horizon + h] < bands[1 * horizon + h], $"step {h}: q05 < q25");
            Assert.True(bands[1 * horizon + h] < median[h], $"step {h}: q25 < median");
            Assert.True(median[h] < bands[2 * horizon + h], $"step {h}: median < q75");
            Assert.True(bands[2 * horizon + h] < bands[3 * horizon + h], $"step {h}: q75 < q95");
            // Each step from its own samples (stride = horizon), not a neighbour's.
            var stepMeans = Enumerable.Range(0, samples).Select(s => (double)means[s * horizon + h]).ToArray();
            var stepSds = Enumerable.Range(0, samples).Select(s => (double)sds[s * horizon + h]).ToArray();
            Assert.Equal(MixtureQuantiles.Quantile(stepMeans, stepSds, 0.5, 0), median[h], 1e-3);
        }
        // Bands widen with the horizon here because the σ grow with it.
        Assert.True(bands[3 * horizon + 11] - bands[11] > bands[3 * horizon] - bands[0]);
    }

    [Fact]
    public void A_non_finite_sample_is_reported_not_summarised()
    {
        float[] means = [120, float.NaN];
        float[] sds = [5, 5];
        Assert.False(ForecastCalibration.Identity(1).For([0.05]).Summarize(120, means, sds, 2, new float[1], new float[1]));
    }

    [Fact]
    public void Summarising_allocates_nothing()
    {
        const int samples = 10, horizon = 12;
        double[] levels = [0.05, 0.25, 0.75, 0.95];
        var means = Enumerable.Range(0, samples * horizon).Select(i => 100f + i % 7).ToArray();
        var sds = Enumerable.Range(0, samples * horizon).Select(i => 5f + i % 3).ToArray();
        var median = new float[horizon];
        var bands = new float[levels.Length * horizon];
        var quantiles = ForecastCalibration.Identity(horizon).For(levels);
        quantiles.Summarize(110, means, sds, samples, median, bands);   // JIT
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++) quantiles.Summarize(110, means, sds, samples, median, bands);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    /// <summary>F(y) by Simpson's rule over the mixture density from far below every component: an independent check
    /// that uses neither Φ nor the solver.</summary>
    private static double IntegratedCdf(double[] means, double[] sds, double y)
    {
        var from = means.Zip(sds, (m, s) => m - 12 * s).Min();
        if (y <= from) return 0;
        const int intervals = 20_000;
        var h = (y - from) / intervals;
        double Density(double x)
        {
            var sum = 0.0;
            for (var i = 0; i < means.Length; i++)
            {
                var z = (x - means[i]) / sds[i];
                sum += Math.Exp(-0.5 * z * z) / (sds[i] * Math.Sqrt(2 * Math.PI));
            }
            return sum / means.Length;
        }
        var total = Density(from) + Density(y);
        for (var k = 1; k < intervals; k++) total += (k % 2 == 1 ? 4 : 2) * Density(from + k * h);
        return total * h / 3;
    }
}
