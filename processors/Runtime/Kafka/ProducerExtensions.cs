using Confluent.Kafka;

namespace StreamHealth.Runtime.Kafka;

/// <summary>What every bulk producer here needs (the simulator's --produce, the load harnesses, the tests' generators):
/// produce as fast as the client accepts.</summary>
public static class ProducerExtensions
{
    /// <summary>Produces, waiting while the client's queue is full instead of failing (a bulk producer outruns the broker by
    /// design); <paramref name="deliveryHandler"/>, when given, sees each delivery report.</summary>
    public static void ProduceBlocking<TKey, TValue>(this IProducer<TKey, TValue> producer, string topic, Message<TKey, TValue> message,
        Action<DeliveryReport<TKey, TValue>>? deliveryHandler = null)
    {
        while (true)
        {
            try
            {
                producer.Produce(topic, message, deliveryHandler);
                return;
            }
            catch (ProduceException<TKey, TValue> e) when (e.Error.Code == ErrorCode.Local_QueueFull)
            {
                producer.Poll(TimeSpan.FromMilliseconds(10));
            }
        }
    }
}
