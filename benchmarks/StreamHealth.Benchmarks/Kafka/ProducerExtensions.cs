using Confluent.Kafka;

namespace StreamHealth.Benchmarks.Kafka;

/// <summary>What every load generator here needs: produce as fast as the client accepts.</summary>
internal static class ProducerExtensions
{
    /// <summary>Produces, waiting while the client's queue is full instead of failing (the generator
    /// outruns the broker by design).</summary>
    public static void ProduceBlocking<TKey, TValue>(this IProducer<TKey, TValue> producer, string topic, Message<TKey, TValue> message)
    {
        while (true)
        {
            try
            {
                producer.Produce(topic, message);
                return;
            }
            catch (ProduceException<TKey, TValue> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
            {
                producer.Poll(TimeSpan.FromMilliseconds(10));
            }
        }
    }
}
