using System.Runtime.CompilerServices;

namespace StreamHealth.Weight.Filter;

/// <summary>The 2-state Kalman core: x = [weight kg, trend kg/day] with covariance P, constant-velocity
/// model over irregular steps. Plain doubles rather than a matrix library: the 2×2 algebra written out
/// is a few dozen flops and no allocation, which is what makes millions of updates per second possible.</summary>
public struct WeightTrendKalman
{
    public double WeightKg;
    public double TrendKgPerDay;
    /// <summary>P[0,0], kg².</summary>
    public double VarWeightKg2;
    /// <summary>P[0,1] = P[1,0], kg²/day.</summary>
    public double CovWeightTrendKg2PerDay;
    /// <summary>P[1,1], kg²/day².</summary>
    public double VarTrendKg2PerDay2;

    public WeightTrendKalman(double weightKg, double trendKgPerDay, double varWeightKg2, double covWeightTrendKg2PerDay, double varTrendKg2PerDay2)
    {
        WeightKg = weightKg;
        TrendKgPerDay = trendKgPerDay;
        VarWeightKg2 = varWeightKg2;
        CovWeightTrendKg2PerDay = covWeightTrendKg2PerDay;
        VarTrendKg2PerDay2 = varTrendKg2PerDay2;
    }

    /// <summary>x ← F x, P ← F P Fᵀ + Q with F = [[1, dt], [0, 1]] and the continuous white-noise-acceleration
    /// Q = q·[[dt³/3, dt²/2], [dt²/2, dt]]: the acceleration is integrated twice over the step, so the
    /// weight's uncertainty grows with dt³ and a long silence widens the gate much more than a short one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Predict(double dtDays, double accelerationNoiseKg2PerDay3)
    {
        var dt = dtDays;
        var dt2 = dt * dt;
        var q = accelerationNoiseKg2PerDay3;
        WeightKg += TrendKgPerDay * dt;
        VarWeightKg2 += 2 * dt * CovWeightTrendKg2PerDay + dt2 * VarTrendKg2PerDay2 + q * dt2 * dt * (1.0 / 3);
        CovWeightTrendKg2PerDay += dt * VarTrendKg2PerDay2 + q * dt2 * 0.5;
        VarTrendKg2PerDay2 += q * dt;
    }

    /// <summary>Innovation variance S = H P Hᵀ + R with H = [1, 0].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly double InnovationVariance(double measurementVarianceKg2) => VarWeightKg2 + measurementVarianceKg2;

    /// <summary>Measurement update with innovation y = z − weight and its variance S.</summary>
    /// <remarks>With H = [1, 0] the gain is K = P[:,0] / S. P ← (I − K H) P written out; it stays symmetric by
    /// construction because only P[0,1] is stored. The trend variance is floored at 0 against rounding.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Update(double innovationKg, double innovationVarianceKg2)
    {
        var gainWeight = VarWeightKg2 / innovationVarianceKg2;
        var gainTrend = CovWeightTrendKg2PerDay / innovationVarianceKg2;
        WeightKg += gainWeight * innovationKg;
        TrendKgPerDay += gainTrend * innovationKg;
        var p01 = CovWeightTrendKg2PerDay;
        VarTrendKg2PerDay2 = Math.Max(VarTrendKg2PerDay2 - gainTrend * p01, 0);
        CovWeightTrendKg2PerDay = p01 * (1 - gainWeight);
        VarWeightKg2 *= 1 - gainWeight;
    }
}
