using System.Runtime.CompilerServices;

namespace StreamHealth.Forecast.Quantiles;

/// <summary>The standard normal distribution in double precision, without allocation. .NET has no erf, so the
/// CDF is W. J. Cody's rational Chebyshev approximation (as in R's pnorm): relative error below 1e-14 in both
/// tails, which keeps Newton steps on a mixture CDF exact to the last float bit of mg/dL.</summary>
public static class Gaussian
{
    private const double InvSqrt2Pi = 0.398942280401432677939946059934;
    private const double Sqrt32 = 5.656854249492380195206754896838;

    /// <summary>φ(z) = exp(−z²/2) / √(2π).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Pdf(double z) => InvSqrt2Pi * Math.Exp(-0.5 * z * z);

    /// <summary>Φ(z) = P(Z ≤ z).</summary>
    public static double Cdf(double z)
    {
        var y = Math.Abs(z);
        if (y <= 0.67448975) return Central(z, y > 1.11e-16 ? z * z : 0);
        var tail = y <= Sqrt32 ? MiddleTail(y, Exp2Part(y)) : FarTail(y, Exp2Part(y));
        return z > 0 ? 1 - tail : tail;
    }

    /// <summary>Φ(z) and φ(z) together, for root searches that need both: the same rational approximations as
    /// <see cref="Cdf"/> sharing one exp(−z²/2) (without Cody's split of z², which only matters beyond |z| ≈ 20 and
    /// costs a second exp; below |z| = 10 the relative error stays under 1e-13).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double CdfAndPdf(double z, out double pdf)
    {
        var y = Math.Abs(z);
        var e = Math.Exp(-0.5 * z * z);
        pdf = InvSqrt2Pi * e;
        if (y <= 0.67448975) return Central(z, z * z);
        var tail = y <= Sqrt32 ? MiddleTail(y, e) : FarTail(y, e);
        return z > 0 ? 1 - tail : tail;
    }

    // Cody's three rational approximations, shared by Cdf and CdfAndPdf (which differ only in how they compute
    // exp(−y²/2), passed in as expHalfYSq); each keeps Cody's evaluation order, so results are bit-identical.

    /// <summary>|z| ≤ 0.674: Φ(z) = ½ + z·R(z²).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static double Central(double z, double zsq)
    {
        var num = 0.065682337918207449113 * zsq;
        var den = zsq;
        num = (num + 2.2352520354606839287) * zsq; den = (den + 47.20258190468824187) * zsq;
        num = (num + 161.02823106855587881) * zsq; den = (den + 976.09855173777669322) * zsq;
        num = (num + 1067.6894854603709582) * zsq; den = (den + 10260.932208618978205) * zsq;
        return 0.5 + z * (num + 18154.981253343561249) / (den + 45507.789335026729956);
    }

    /// <summary>0.674 &lt; y ≤ √32: the upper tail 1 − Φ(y).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static double MiddleTail(double y, double expHalfYSq)
    {
        var num = 1.0765576773720192317e-8 * y;
        var den = y;
        num = (num + 0.39894151208813466764) * y; den = (den + 22.266688044328115691) * y;
        num = (num + 8.8831497943883759412) * y; den = (den + 235.38790178262499861) * y;
        num = (num + 93.506656132177855979) * y; den = (den + 1519.377599407554805) * y;
        num = (num + 597.27027639480026226) * y; den = (den + 6485.558298266760755) * y;
        num = (num + 2494.5375852903726711) * y; den = (den + 18615.571640885098091) * y;
        num = (num + 6848.1904505362823326) * y; den = (den + 34900.952721145977266) * y;
        num = (num + 11602.651437647350124) * y; den = (den + 38912.003286093271411) * y;
        return expHalfYSq * (num + 9842.7148383839780218) / (den + 19685.429676859990727);
    }

    /// <summary>y &gt; √32: the upper tail 1 − Φ(y) by the asymptotic series.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static double FarTail(double y, double expHalfYSq)
    {
        var ysq = 1 / (y * y);
        var num = 0.02307344176494017303 * ysq;
        var den = ysq;
        num = (num + 0.21589853405795699) * ysq; den = (den + 1.28426009614491121) * ysq;
        num = (num + 0.1274011611602473639) * ysq; den = (den + 0.468238212480865118) * ysq;
        num = (num + 0.022235277870649807) * ysq; den = (den + 0.0659881378689285515) * ysq;
        num = (num + 0.001421619193227893466) * ysq; den = (den + 0.00378239633202758244) * ysq;
        var r = ysq * (num + 2.9112874951168792e-5) / (den + 7.29751555083966205e-5);
        return expHalfYSq * (InvSqrt2Pi - r) / y;
    }

    /// <summary>exp(−y²/2) split as exp(−a²/2)·exp(−(y−a)(y+a)/2) with a = y rounded down to 1/16, so the
    /// cancellation in y² does not cost digits (Cody).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static double Exp2Part(double y)
    {
        var a = Math.Truncate(y * 16) / 16;
        return Math.Exp(-a * a * 0.5) * Math.Exp(-(y - a) * (y + a) * 0.5);
    }

    /// <summary>Φ⁻¹(p) for 0 &lt; p &lt; 1: Acklam's rational approximation (relative error 1.2e-9) polished by two
    /// Newton steps on <see cref="Cdf"/>. Used when options are read, not per forecast.</summary>
    public static double Quantile(double p)
    {
        if (!(p > 0 && p < 1)) throw new ArgumentOutOfRangeException(nameof(p), p, "a probability strictly between 0 and 1");
        const double low = 0.02425;
        double z;
        if (p < low)
        {
            var q = Math.Sqrt(-2 * Math.Log(p));
            z = (((((-7.784894002430293e-03 * q - 3.223964580411365e-01) * q - 2.400758277161838e+00) * q - 2.549732539343734e+00) * q
                  + 4.374664141464968e+00) * q + 2.938163982698783e+00)
                / ((((7.784695709041462e-03 * q + 3.224671290700398e-01) * q + 2.445134137142996e+00) * q + 3.754408661907416e+00) * q + 1);
        }
        else if (p <= 1 - low)
        {
            var q = p - 0.5;
            var r = q * q;
            z = (((((-3.969683028665376e+01 * r + 2.209460984245205e+02) * r - 2.759285104469687e+02) * r + 1.383577518672690e+02) * r
                  - 3.066479806614716e+01) * r + 2.506628277459239e+00) * q
                / (((((-5.447609879822406e+01 * r + 1.615858368580409e+02) * r - 1.556989798598866e+02) * r + 6.680131188771972e+01) * r
                    - 1.328068155288572e+01) * r + 1);
        }
        else
        {
            var q = Math.Sqrt(-2 * Math.Log(1 - p));
            z = -(((((-7.784894002430293e-03 * q - 3.223964580411365e-01) * q - 2.400758277161838e+00) * q - 2.549732539343734e+00) * q
                   + 4.374664141464968e+00) * q + 2.938163982698783e+00)
                / ((((7.784695709041462e-03 * q + 3.224671290700398e-01) * q + 2.445134137142996e+00) * q + 3.754408661907416e+00) * q + 1);
        }
        for (var i = 0; i < 2; i++)
        {
            var pdf = Pdf(z);
            if (pdf <= 0) break;
            z -= (Cdf(z) - p) / pdf;
        }
        return z;
    }
}
